"""The per-device DINO train step, with collectives over a named axis, and its pmap wrapper.

The step uses only ``lax.pmean`` and ``lax.axis_index`` over ``axis_name``, so wrapping it with
``jax.shard_map`` instead of ``jax.pmap`` is a one-line change. Random numbers depend on
(seed, step, global sample index) only: one global batch gives the same augmentations whatever
the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cellssl_jax.dino.augment import AugmentConfig, batch_multi_crop
from cellssl_jax.dino.loss import dino_loss, entropy, update_center
from cellssl_jax.dino.schedules import DinoSchedules
from cellssl_jax.dino.state import TrainState
from cellssl_jax.models.heads import MultiCropModel


@dataclasses.dataclass(frozen=True)
class StepConfig:
    """Static settings of the step (hashable: they are closed over, not traced)."""

    augment: AugmentConfig
    schedules: DinoSchedules
    student_temp: float = 0.1
    center_momentum: float = 0.9


def train_step(
    state: TrainState,
    images: jax.Array,
    *,
    student: MultiCropModel,
    teacher: MultiCropModel,
    tx: optax.GradientTransformationExtraArgs,
    cfg: StepConfig,
    axis_name: str = "batch",
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One DINO step on this device's uint8 images [B_local, H, W, 3]; metrics are device means."""
    b_local = images.shape[0]
    dev = jax.lax.axis_index(axis_name)
    key = jax.random.fold_in(state.rng, state.step)
    aug_key, drop_key = jax.random.split(key)
    sample_ids = dev * b_local + jnp.arange(b_local)
    keys = jax.vmap(lambda i: jax.random.fold_in(aug_key, i))(sample_ids)
    glob, loc = batch_multi_crop(keys, images, cfg.augment)
    crops = [glob] if cfg.augment.n_local == 0 else [glob, loc]
    return crops_step(
        state, crops, jax.random.fold_in(drop_key, dev),
        student=student, teacher=teacher, tx=tx, cfg=cfg, axis_name=axis_name,
    )


def crops_step(
    state: TrainState,
    crops: Sequence[jax.Array],
    dropout_key: jax.Array,
    *,
    student: MultiCropModel,
    teacher: MultiCropModel,
    tx: optax.GradientTransformationExtraArgs,
    cfg: StepConfig,
    axis_name: str = "batch",
) -> tuple[TrainState, dict[str, jax.Array]]:
    """DINO's update on given views, as main_dino.py's ``train_one_epoch`` iteration.

    ``crops``: [global views [2 * B_local, G, G, 3], then local views [n * B_local, L, L, 3] if
    any], float, normalised, grouped by view then sample. Teacher on the global views, student on
    all; loss; gradients averaged over devices; clipping and AdamW (the prototype layer skipped
    while frozen); EMA teacher; centre. Checked step for step against PyTorch DINO
    (tests/test_dino_reference.py).
    """
    sched = cfg.schedules
    step = state.step
    n_views = sum(c.shape[0] for c in crops) // (crops[0].shape[0] // 2)

    teacher_logits, t_vars = teacher.apply(
        {"params": state.teacher_params, "batch_stats": state.teacher_batch_stats},
        [crops[0]],
        train=True,
        mutable=["batch_stats"],
    )
    teacher_logits = jax.lax.stop_gradient(teacher_logits)
    temp = sched.temperature(step)

    def loss_fn(params):
        logits, s_vars = student.apply(
            {"params": params, "batch_stats": state.batch_stats},
            list(crops),
            train=True,
            mutable=["batch_stats"],
            rngs={"dropout": dropout_key},
        )
        loss, stats = dino_loss(
            logits,
            teacher_logits,
            state.center,
            n_student_views=n_views,
            student_temp=cfg.student_temp,
            teacher_temp=temp,
        )
        return loss, (s_vars["batch_stats"], stats)

    (loss, (batch_stats, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = jax.lax.pmean(grads, axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params, step=step)
    params = optax.apply_updates(state.params, updates)

    m = sched.momentum(step)
    teacher_params = jax.tree.map(lambda t, s: m * t + (1.0 - m) * s, state.teacher_params, params)
    center = update_center(state.center, teacher_logits, cfg.center_momentum, axis_name)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))

    metrics = {
        "loss": loss,
        "lr": sched.learning_rate(step),
        "wd": sched.wd(step),
        "momentum": m,
        "teacher_temp": temp,
        "grad_norm": optax.global_norm(grads),
        "params_finite": finite.astype(jnp.float32),
        **stats,
    }
    metrics = jax.lax.pmean(metrics, axis_name)
    metrics["teacher_mean_entropy"] = entropy(metrics.pop("teacher_mean_probs"))
    new_state = state.replace(
        step=step + 1,
        params=params,
        teacher_params=teacher_params,
        batch_stats=batch_stats,
        teacher_batch_stats=t_vars["batch_stats"],
        center=center,
        opt_state=opt_state,
    )
    return new_state, metrics


def pmapped_step(
    *,
    student: MultiCropModel,
    teacher: MultiCropModel,
    tx: optax.GradientTransformationExtraArgs,
    cfg: StepConfig,
    devices: Sequence[jax.Device] | None = None,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """``train_step`` over the leading device axis of (replicated state, images [D, B, ...])."""
    fn = functools.partial(train_step, student=student, teacher=teacher, tx=tx, cfg=cfg)
    return jax.pmap(fn, axis_name="batch", donate_argnums=(0,), devices=devices)


def replicate(tree: Any, devices: Sequence[jax.Device] | None = None) -> Any:
    """One copy per device, laid out as ``pmapped_step`` returns its state.

    (``flax.jax_utils.replicate`` gives another sharding, which costs a second compilation.)
    """
    n = len(devices) if devices is not None else jax.local_device_count()
    stacked = jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)
    return jax.pmap(lambda x: x, axis_name="batch", devices=devices)(stacked)
