"""DINO's optimiser: gradient clipping (per-tensor norm or AGC), then ``torch.optim.AdamW`` with
DINO's two parameter groups, per-step lr / weight decay, and the frozen last layer.

Written out rather than assembled from optax because two of DINO's semantics have no optax
equivalent, and approximating them was wrong twice (weight decay never applied; oversized
prototype updates after the freeze):
- the learning rate and weight decay of a step come from the *global* step (DINO sets
  ``param_group["lr"] = lr_schedule[it]``), passed as ``tx.update(..., step=step)``;
- while the prototype layer is frozen its gradient is ``None`` in PyTorch
  (``cancel_gradients_last_layer``), so AdamW skips it entirely: no moment update, no decay, and
  its own step count (``state["step"]`` is per parameter) starts at 1 on release.

Weight decay skips biases and 1-D parameters (DINO's ``get_params_groups``). AGC follows timm's
``adaptive_clip_grad``: each output unit's gradient norm is capped at ``factor`` times the norm
of its weights (at least ``eps``); the output axis is the last one for Flax kernels and the
first one for the (out, in) prototype matrix and the per-head / per-token parameters stored
out-first, so the units are the same as timm's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

_OUT_FIRST = ("weight_v", "weight_g", "temperature", "cls_token")
_LAST_LAYER = ("weight_v", "weight_g")

Schedule = Callable[[jax.Array], jax.Array]


def _name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def decay_mask(params: Any) -> Any:
    """True where weight decay applies: not a bias, more than one dimension."""
    return jax.tree_util.tree_map_with_path(
        lambda p, x: x.ndim > 1 and not _name(p).endswith("bias"), params
    )


def last_layer_mask(params: Any) -> Any:
    """True for the head's prototype layer (frozen during the first epoch(s))."""
    return jax.tree_util.tree_map_with_path(lambda p, x: _name(p) in _LAST_LAYER, params)


def _unitwise_norm(x: jax.Array, out_first: bool) -> jax.Array:
    if x.ndim <= 1:
        return jnp.sqrt(jnp.sum(x * x))
    axes = tuple(range(1, x.ndim)) if out_first else tuple(range(x.ndim - 1))
    return jnp.sqrt(jnp.sum(x * x, axis=axes, keepdims=True))


def adaptive_grad_clip(factor: float, eps: float = 1e-3) -> optax.GradientTransformation:
    """timm's AGC with units laid out as explained in the module docstring."""

    def update(updates, state, params=None):
        def clip(path, g, p):
            out_first = _name(path) in _OUT_FIRST
            max_norm = jnp.maximum(_unitwise_norm(p, out_first), eps) * factor
            g_norm = _unitwise_norm(g, out_first)
            clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6))
            return jnp.where(g_norm < max_norm, g, clipped)

        return jax.tree_util.tree_map_with_path(clip, updates, params), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def per_tensor_clip(max_norm: float) -> optax.GradientTransformation:
    """DINO's clip_gradients: each tensor's gradient scaled to norm <= max_norm separately."""

    def update(updates, state, params=None):
        def clip(g):
            coef = max_norm / (jnp.sqrt(jnp.sum(g * g)) + 1e-6)
            return jnp.where(coef < 1.0, g * coef, g)

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


class AdamWState(NamedTuple):
    """``torch.optim.AdamW``'s per-parameter state: its own step count and both moments."""

    count: Any
    mu: Any
    nu: Any


def dino_adamw(
    lr: Schedule,
    weight_decay: Schedule,
    *,
    freeze_last_layer_steps: int = 0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
    """``torch.optim.AdamW`` over DINO's parameter groups; ``update`` needs ``step=`` (global).

    Parameters in ``last_layer_mask`` are skipped, as if their gradient were None, while
    ``step < freeze_last_layer_steps``.
    """
    log_b1, log_b2 = math.log(b1), math.log(b2)  # bias corrections without float32 b ** t

    def init(params):
        return AdamWState(
            count=jax.tree.map(lambda _: jnp.zeros([], jnp.int32), params),
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(jnp.zeros_like, params),
        )

    def update(grads, state, params=None, *, step, **_):
        if params is None:
            raise ValueError("dino_adamw needs params (decoupled weight decay)")
        lr_t, wd_t = lr(step), weight_decay(step)
        frozen = jnp.asarray(step) < freeze_last_layer_steps

        def leaf(g, p, count, mu, nu, decays, last):
            skip = frozen if last else jnp.asarray(False)
            t = count + 1
            mu_t = b1 * mu + (1.0 - b1) * g
            nu_t = b2 * nu + (1.0 - b2) * g * g
            bc1 = -jnp.expm1(t * log_b1)
            bc2 = -jnp.expm1(t * log_b2)
            u = -(lr_t / bc1) * mu_t / (jnp.sqrt(nu_t) / jnp.sqrt(bc2) + eps)
            if decays:
                u = u - lr_t * wd_t * p
            keep = lambda new, old: jnp.where(skip, old, new)  # noqa: E731
            return keep(u, jnp.zeros_like(u)), keep(t, count), keep(mu_t, mu), keep(nu_t, nu)

        out = jax.tree.map(
            leaf, grads, params, state.count, state.mu, state.nu,
            decay_mask(params), last_layer_mask(params),
        )
        pick = lambda i: jax.tree.map(lambda _, o: o[i], grads, out)  # noqa: E731
        return pick(0), AdamWState(count=pick(1), mu=pick(2), nu=pick(3))

    return optax.GradientTransformationExtraArgs(init, update)


def make_optimizer(
    *,
    lr: Schedule,
    weight_decay: Schedule,
    clip_mode: str,
    clip: float,
    freeze_last_layer_steps: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Clipping ("agc", "norm" or "none") followed by ``dino_adamw``; update with ``step=``."""
    if clip_mode == "agc":
        clipper = adaptive_grad_clip(clip)
    elif clip_mode == "norm":
        clipper = per_tensor_clip(clip)
    elif clip_mode == "none":
        clipper = optax.identity()
    else:
        raise ValueError(f"clip_mode must be 'agc', 'norm' or 'none', got {clip_mode!r}")
    adamw = dino_adamw(lr, weight_decay, freeze_last_layer_steps=freeze_last_layer_steps)
    return optax.chain(clipper, adamw)
