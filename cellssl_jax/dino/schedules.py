"""DINO's schedules as pure functions of the step (usable inside jit; no precomputed tables).

Step-for-step equal to DINO's ``utils.cosine_scheduler`` (main_dino.py builds lr, weight decay
and teacher momentum with it): a warm-up ``np.linspace(warmup_start, base, warmup_steps)``, which
reaches ``base`` on its last step, then ``final + (base - final) / 2 * (1 + cos(pi * i / n))``
over the remaining ``n = total_steps - warmup_steps`` steps (``i`` from 0 to ``n - 1``).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from jax.typing import ArrayLike


def _linspace_fraction(step: jnp.ndarray, n: int) -> jnp.ndarray:
    """Position of ``step`` in ``np.linspace(0, 1, n)``, held at 1 after it (and 1 if n == 0)."""
    if n <= 0:
        return jnp.ones_like(step)
    return jnp.clip(step / max(n - 1, 1), 0.0, 1.0)


def warmup_cosine(
    step: ArrayLike,
    *,
    base: float,
    final: float,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_start: float = 0.0,
) -> jnp.ndarray:
    """DINO cosine_scheduler at ``step`` (held at its last value past ``total_steps``)."""
    step = jnp.asarray(step, jnp.float32)
    warm = warmup_start + (base - warmup_start) * _linspace_fraction(step, warmup_steps)
    decay_len = max(total_steps - warmup_steps, 1)
    t = jnp.clip((step - warmup_steps) / decay_len, 0.0, (decay_len - 1) / decay_len)
    cos = final + 0.5 * (base - final) * (1.0 + jnp.cos(jnp.pi * t))
    return jnp.where(step < warmup_steps, warm, cos)


def linear_warmup(step: ArrayLike, *, start: float, end: float, warmup_steps: int) -> jnp.ndarray:
    """``np.linspace(start, end, warmup_steps)``, then ``end`` (DINO's teacher temperature,
    which DINO indexes by epoch and we by step)."""
    step = jnp.asarray(step, jnp.float32)
    return start + (end - start) * _linspace_fraction(step, warmup_steps)


@dataclasses.dataclass(frozen=True)
class DinoSchedules:
    """All of a run's schedules, in steps (a run's epochs are converted by the caller).

    ``lr`` is the peak learning rate already scaled by global batch / 256. The teacher momentum
    follows a cosine from ``momentum_teacher`` to ``momentum_teacher_end`` (DINO: to 1; the
    paper's code passes a constant, i.e. both equal).
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
    momentum_teacher_end: float = 1.0

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
            step,
            base=self.momentum_teacher,
            final=self.momentum_teacher_end,
            total_steps=self.total_steps,
        )

    def temperature(self, step: ArrayLike) -> jnp.ndarray:
        return linear_warmup(
            step,
            start=self.warmup_teacher_temp,
            end=self.teacher_temp,
            warmup_steps=self.warmup_teacher_temp_steps,
        )
