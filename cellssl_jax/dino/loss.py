"""DINO loss: cross-entropy of the centred, sharpened teacher and the student over view pairs."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dino_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    center: jax.Array,
    *,
    n_student_views: int,
    student_temp: float,
    teacher_temp: jax.Array | float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mean over (teacher view, student view) pairs with different views of the batch-mean CE.

    ``student_logits``: [n_student_views * B, K] (global views first, as the teacher's);
    ``teacher_logits``: [n_teacher_views * B, K]; ``center``: [K]. Returns (loss, stats) where
    stats hold the mean per-sample entropy of the teacher output (near 0: sharp; log K: uniform)
    and the batch-mean teacher distribution, whose entropy (near 0) reveals a collapse onto one
    prototype.
    """
    k = student_logits.shape[-1]
    n_t = teacher_logits.shape[0] * n_student_views // student_logits.shape[0]
    s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / student_temp, axis=-1)
    s = s.reshape(n_student_views, -1, k)
    t_logits = (jax.lax.stop_gradient(teacher_logits).astype(jnp.float32) - center) / teacher_temp
    t = jax.nn.softmax(t_logits, axis=-1).reshape(n_t, -1, k)
    # ce[i, j] = mean_b sum_k -t[i, b, k] * s[j, b, k]
    ce = -jnp.einsum("ibk,jbk->ij", t, s) / s.shape[1]
    off_diag = 1.0 - jnp.eye(n_t, n_student_views, dtype=ce.dtype)
    loss = jnp.sum(ce * off_diag) / jnp.sum(off_diag)
    log_t = jax.nn.log_softmax(t_logits, axis=-1)
    per_sample = -jnp.mean(jnp.sum(t.reshape(-1, k) * log_t, axis=-1))
    mean_t = jnp.mean(t.reshape(-1, k), axis=0)
    return loss, {"teacher_entropy": per_sample, "teacher_mean_probs": mean_t}


def entropy(p: jax.Array) -> jax.Array:
    """Entropy (nats) of a distribution [K]: near 0 = one prototype wins (collapse)."""
    return -jnp.sum(p * jnp.log(jnp.maximum(p, 1e-30)))


def update_center(
    center: jax.Array, teacher_logits: jax.Array, momentum: float, axis_name: str | None
) -> jax.Array:
    """EMA of the batch-mean teacher logits, the batch mean taken over all devices of ``axis_name``.

    (The original code of the paper did not average it across devices; we do, as DINO does.)
    """
    batch_center = jnp.mean(jax.lax.stop_gradient(teacher_logits).astype(jnp.float32), axis=0)
    if axis_name is not None:
        batch_center = jax.lax.pmean(batch_center, axis_name)
    return center * momentum + batch_center * (1.0 - momentum)
