"""The explicit training state (one pytree) and its initialisation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from cellssl_jax.models.heads import MultiCropModel


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes, so a checkpoint of it resumes a run exactly.

    ``params``/``batch_stats`` are the student's ({"backbone", "head"}); the teacher has its own
    parameters (EMA of the student's) and BatchNorm statistics (it runs in train mode, as DINO's);
    ``center`` is the DINO centre [out_dim]; ``rng`` is a raw uint32 key from which every step
    folds its own key, so the random stream depends only on (seed, step).
    """

    step: jax.Array
    params: Any
    teacher_params: Any
    batch_stats: Any
    teacher_batch_stats: Any
    center: jax.Array
    opt_state: Any
    rng: jax.Array


def create_train_state(
    model: MultiCropModel,
    tx: optax.GradientTransformation,
    seed: int,
    sample_crops: Sequence[jax.Array],
    init_backbone: dict | None = None,
) -> TrainState:
    """Initialise the student, copy it into the teacher (head included), build the optimiser state.

    ``init_backbone``: optional {"params", "batch_stats"} of a pretrained backbone (e.g. an
    ImageNet encoder file), used for both networks.
    """
    key = jax.random.PRNGKey(seed)
    init_key, rng = jax.random.split(key)
    variables = model.init({"params": init_key}, list(sample_crops), train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    if init_backbone is not None:
        params = _replace_backbone(params, init_backbone["params"], "params")
        batch_stats = _replace_backbone(batch_stats, init_backbone.get("batch_stats", {}), "bn")
    copy = lambda t: jax.tree.map(jnp.array, t)  # noqa: E731 - separate buffers for donation
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        teacher_params=copy(params),
        batch_stats=batch_stats,
        teacher_batch_stats=copy(batch_stats),
        center=jnp.zeros((model.head.out_dim,), jnp.float32),
        opt_state=tx.init(params),
        rng=rng,
    )


def _replace_backbone(tree: dict, backbone: dict, what: str) -> dict:
    ours = tree.get("backbone", {})
    if jax.tree.structure(ours) != jax.tree.structure(backbone):
        raise ValueError(f"init_encoder {what} do not match the configured backbone's structure")
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(backbone), strict=True):
        if a.shape != b.shape:
            raise ValueError(f"init_encoder {what}: shape {b.shape} where the model has {a.shape}")
    return {**tree, "backbone": jax.tree.map(jnp.asarray, backbone)}
