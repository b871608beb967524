"""Schedules against DINO's utils.cosine_scheduler (transcribed in dino_cosine_scheduler.py)
and np.linspace, step by step."""

import numpy as np
import pytest
from dino_cosine_scheduler import cosine_scheduler

from cellssl_jax.dino.schedules import DinoSchedules, linear_warmup, warmup_cosine


@pytest.mark.parametrize("warmup_epochs", [0, 1, 2])
def test_warmup_cosine_equals_dino(warmup_epochs):
    ref = cosine_scheduler(5e-4, 1e-6, 10, 7, warmup_epochs=warmup_epochs)
    ours = [float(warmup_cosine(i, base=5e-4, final=1e-6, total_steps=70,
                                warmup_steps=7 * warmup_epochs)) for i in range(70)]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-12)  # float32 vs float64
    # past the end it holds the last value (DINO's table has no entry there)
    held = warmup_cosine(200, base=5e-4, final=1e-6, total_steps=70,
                         warmup_steps=7 * warmup_epochs)
    assert float(held) == pytest.approx(ref[-1], rel=1e-5)


def test_teacher_temperature_is_linspace_then_constant():
    ref = np.concatenate([np.linspace(0.02, 0.04, 4), np.full(6, 0.04)])
    ours = [float(linear_warmup(i, start=0.02, end=0.04, warmup_steps=4)) for i in range(10)]
    np.testing.assert_allclose(ours, ref, rtol=1e-6)
    assert float(linear_warmup(0, start=0.02, end=0.04, warmup_steps=0)) == pytest.approx(0.04)


def test_run_schedules_equal_main_dino():
    s = DinoSchedules(total_steps=100, lr=5e-4, min_lr=1e-6, warmup_steps=10,
                      weight_decay=0.04, weight_decay_end=0.4, momentum_teacher=0.996,
                      teacher_temp=0.04, warmup_teacher_temp=0.02, warmup_teacher_temp_steps=20,
                      freeze_last_layer_steps=5)
    steps = range(100)
    pairs = [
        (s.learning_rate, cosine_scheduler(5e-4, 1e-6, 10, 10, warmup_epochs=1)),
        (s.wd, cosine_scheduler(0.04, 0.4, 10, 10)),
        (s.momentum, cosine_scheduler(0.996, 1.0, 10, 10)),
    ]
    for fn, ref in pairs:
        np.testing.assert_allclose([float(fn(i)) for i in steps], ref, rtol=1e-5)
    const = DinoSchedules(**{**s.__dict__, "momentum_teacher": 0.9995,
                             "momentum_teacher_end": 0.9995})
    np.testing.assert_allclose([float(const.momentum(i)) for i in steps], 0.9995, rtol=1e-7)
