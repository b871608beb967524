"""DINO's schedules as pure functions of the step (usable inside jit; no precomputed tables).

Step-based versions of DINO's ``cosine_scheduler``: linear warm-up from ``warmup_start`` to
``base`` over ``warmup_steps``, then a half cosine from ``base`` to ``final`` ending at
``total_steps``.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jax.typing import ArrayLike


def warmup_cosine(
    step: ArrayLike,
    *,
    base: float,
    final: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> jnp.ndarray:
    """DINO cosine_scheduler at ``step`` (held at ``final`` past ``total_steps``)."""
    step = jnp.asarray(step, jnp.float32)
    warm = warmup_start + (base - warmup_start) * step / max(warmup_steps, 1)
    decay_len = max(total_steps - warmup_steps, 1)
    t = jnp.clip((step - warmup_steps) / decay_len, 0.0, 1.0)
    cos = final + 0.5 * (base - final) * (1.0 + jnp.cos(jnp.pi * t))
    return jnp.where(step < warmup_steps, warm, cos)


def linear_warmup(step: ArrayLike, *, start: float, end: float, warmup_steps: int) -> jnp.ndarray:
    """Linear from ``start`` to ``end`` over ``warmup_steps``, then constant (teacher temp)."""
    step = jnp.asarray(step, jnp.float32)
    frac = jnp.clip(step / max(warmup_steps, 1), 0.0, 1.0)
    return start + (end - start) * frac


@dataclasses.dataclass(frozen=True)
class DinoSchedules:
    """All of a run's schedules, in steps (a run's epochs are converted by the caller).

    ``lr`` is the peak learning rate already scaled by global batch / 256.
    """

    total_steps: int
    lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    weight_decay_end: float
    momentum_teacher: float
    teacher_temp: float
    warmup_teacher_temp: float
    warmup_teacher_temp_steps: int
    freeze_last_layer_steps: int

    def learning_rate(self, step: ArrayLike) -> jnp.ndarray:
        return warmup_cosine(
            step,
            base=self.lr,
            final=self.min_lr,
            total_steps=self.total_steps,
            warmup_steps=self.warmup_steps,
        )

    def wd(self, step: ArrayLike) -> jnp.ndarray:
        return warmup_cosine(
            step, base=self.weight_decay, final=self.weight_decay_end, total_steps=self.total_steps
        )

    def momentum(self, step: ArrayLike) -> jnp.ndarray:
        return warmup_cosine(
            step, base=self.momentum_teacher, final=1.0, total_steps=self.total_steps
        )

    def temperature(self, step: ArrayLike) -> jnp.ndarray:
        return linear_warmup(
            step,
            start=self.warmup_teacher_temp,
            end=self.teacher_temp,
            warmup_steps=self.warmup_teacher_temp_steps,
        )
