"""The per-device DINO train step, with collectives over a named axis, and its two drivers.

The step uses only ``lax.pmean`` and ``lax.axis_index`` over ``axis_name``, so it runs the same
under ``jax.pmap`` (``pmapped_step``) and under ``jax.jit`` + ``jax.shard_map`` over a one-axis
``Mesh`` (``shard_mapped_step``, the form new JAX code uses). Random numbers depend on
(seed, step, global sample index) only: one global batch gives the same augmentations whatever
the number of devices or processes.
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
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

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
        "grad_norm": optax.tree.norm(grads),
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


def shard_mapped_step(
    *,
    student: MultiCropModel,
    teacher: MultiCropModel,
    tx: optax.GradientTransformationExtraArgs,
    cfg: StepConfig,
    mesh: Mesh,
) -> Callable[[TrainState, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """``train_step`` under ``jax.jit`` + ``jax.shard_map`` over ``mesh``'s "batch" axis:
    (state replicated, images [B_global, H, W, 3] sharded along the batch) -> (state, metrics),
    both replicated.

    ``check_vma=False``: with it on, differentiating the device's loss with respect to the
    replicated parameters would already sum the gradients over devices (the transpose of
    replication), and the step's own ``pmean`` would then scale them by the device count; off,
    each device's gradient is its own, as under pmap, and the ``pmean`` averages them.
    """
    fn = functools.partial(train_step, student=student, teacher=teacher, tx=tx, cfg=cfg)
    mapped = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P("batch")), out_specs=(P(), P()),
                           check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,))


@dataclasses.dataclass(frozen=True)
class Parallel:
    """A driver of ``train_step`` over all devices of all processes, with how the state and
    this process's batches [L, P, H, W, 3] (``host_batches``) go on the devices and back."""

    step: Callable[[Any, jax.Array], tuple[Any, dict[str, jax.Array]]]
    put_state: Callable[[TrainState], Any]
    put_batch: Callable[[np.ndarray], jax.Array]
    get_state: Callable[[Any], TrainState]


def make_parallel(
    kind: str,
    *,
    student: MultiCropModel,
    teacher: MultiCropModel,
    tx: optax.GradientTransformationExtraArgs,
    cfg: StepConfig,
) -> Parallel:
    """The "pmap" or "shard_map" driver on all devices (``config.parallel``)."""
    kw = dict(student=student, teacher=teacher, tx=tx, cfg=cfg)
    if kind == "pmap":
        return Parallel(
            step=pmapped_step(**kw),
            put_state=replicate,
            put_batch=lambda images: images,
            # the first local device's copy, read without a computation: x[0] runs one, which
            # on several processes can wait behind another process's collective (a deadlock)
            get_state=lambda state: jax.tree.map(
                lambda x: np.asarray(x.addressable_data(0))[0], state
            ),
        )
    if kind == "shard_map":
        # devices grouped by process, so each process's rows of the global batch are its own
        # images in host_batches' order, and sample indices are those pmap gives them
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
        mesh = Mesh(np.asarray(devices), ("batch",))
        batch_sharding = NamedSharding(mesh, P("batch"))
        return Parallel(
            step=shard_mapped_step(**kw, mesh=mesh),
            put_state=lambda state: replicate_on(mesh, state),
            put_batch=lambda images: jax.make_array_from_process_local_data(
                batch_sharding, images.reshape(-1, *images.shape[2:])
            ),
            get_state=jax.device_get,
        )
    raise ValueError(f"parallel must be pmap or shard_map, got {kind!r}")


def replicate_on(mesh: Mesh, tree: Any) -> Any:
    """A copy of a host tree on every device of ``mesh`` (of every process) as global arrays."""
    sharding = NamedSharding(mesh, P())

    def put(x: Any) -> jax.Array:
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda _: x)

    return jax.tree.map(put, tree)
