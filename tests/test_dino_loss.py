"""DINO loss and centre against hand-computed cases."""

import numpy as np
import pytest

from cellssl_jax.dino.loss import dino_loss, entropy, update_center


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def test_loss_matches_hand_computation():
    rng = np.random.default_rng(0)
    b, k, n_views = 3, 7, 4
    student = rng.normal(size=(n_views * b, k)).astype(np.float32)
    teacher = rng.normal(size=(2 * b, k)).astype(np.float32)
    center = rng.normal(size=k).astype(np.float32) * 0.1
    loss, stats = dino_loss(student, teacher, center, n_student_views=n_views,
                            student_temp=0.1, teacher_temp=0.04)
    t = _softmax((teacher - center) / 0.04).reshape(2, b, k)
    s = np.log(_softmax(student / 0.1)).reshape(n_views, b, k)
    terms = [np.mean(np.sum(-t[i] * s[j], -1)) for i in range(2) for j in range(n_views) if i != j]
    assert len(terms) == 2 * n_views - 2
    assert float(loss) == pytest.approx(np.mean(terms), rel=1e-5)
    per_sample = np.mean(-np.sum(t * np.log(t), -1))
    assert float(stats["teacher_entropy"]) == pytest.approx(per_sample, rel=1e-4)
    np.testing.assert_allclose(stats["teacher_mean_probs"], t.reshape(-1, k).mean(0), rtol=1e-5)


def test_two_view_case_by_hand():
    # 1 sample, 2 views, K=2: loss = mean(CE(t0, s1), CE(t1, s0))
    student = np.log(np.array([[0.5, 0.5], [0.9, 0.1]], np.float32)) * 0.1  # /0.1 -> log probs
    teacher = np.array([[0.0, 0.0], [0.0, 0.0]], np.float32)  # uniform teacher
    loss, _ = dino_loss(student, teacher, np.zeros(2, np.float32), n_student_views=2,
                        student_temp=0.1, teacher_temp=0.04)
    expect = 0.5 * (-np.log(0.5) + -(0.5 * np.log(0.9) + 0.5 * np.log(0.1)))
    assert float(loss) == pytest.approx(expect, rel=1e-5)


def test_center_ema():
    center = np.array([1.0, -1.0], np.float32)
    teacher = np.array([[2.0, 0.0], [4.0, 2.0]], np.float32)  # batch mean [3, 1]
    new = update_center(center, teacher, momentum=0.9, axis_name=None)
    np.testing.assert_allclose(new, [0.9 * 1 + 0.1 * 3, 0.9 * -1 + 0.1 * 1], rtol=1e-6)


def test_entropy_extremes():
    assert float(entropy(np.array([1.0, 0.0, 0.0]))) == pytest.approx(0.0, abs=1e-6)
    assert float(entropy(np.full(8, 1 / 8))) == pytest.approx(np.log(8), rel=1e-6)
