"""AdamW with DINO's parameter groups, gradient clipping (per-tensor norm or AGC) and the frozen
last layer.

Weight decay skips biases and 1-D parameters (DINO's get_params_groups). AGC follows timm's
``adaptive_clip_grad``: each output unit's gradient norm is capped at ``factor`` times the norm
of its weights (at least ``eps``); the output axis is the last one for Flax kernels and the
first one for the (out, in) prototype matrix and the per-head / per-token parameters stored
out-first, so the units are the same as timm's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

_OUT_FIRST = ("weight_v", "weight_g", "temperature", "cls_token")
_LAST_LAYER = ("weight_v", "weight_g")


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


def make_optimizer(
    *,
    lr: Callable[[jax.Array], jax.Array],
    weight_decay: Callable[[jax.Array], jax.Array],
    clip_mode: str,
    clip: float,
) -> optax.GradientTransformation:
    """Clipping ("agc", "norm" or "none") followed by AdamW with scheduled lr and weight decay."""
    if clip_mode == "agc":
        clipper = adaptive_grad_clip(clip)
    elif clip_mode == "norm":
        clipper = per_tensor_clip(clip)
    elif clip_mode == "none":
        clipper = optax.identity()
    else:
        raise ValueError(f"clip_mode must be 'agc', 'norm' or 'none', got {clip_mode!r}")
    adamw = optax.inject_hyperparams(optax.adamw)(
        learning_rate=lr, weight_decay=weight_decay, b1=0.9, b2=0.999, eps=1e-8, mask=decay_mask
    )
    return optax.chain(clipper, adamw)


def zero_masked(tree: Any, mask: Any, zero: jax.Array) -> Any:
    """Zero the leaves where ``mask`` is True when ``zero`` (a traced bool) holds."""
    return jax.tree.map(lambda x, m: jnp.where(zero, 0.0, x) if m else x, tree, mask)
