"""Schedules against DINO's cosine_scheduler written out by hand."""

import math

import numpy as np
import pytest

from cellssl_jax.dino.schedules import DinoSchedules, linear_warmup, warmup_cosine


def test_warmup_then_cosine():
    kw = dict(base=1.0, final=0.1, total_steps=12, warmup_steps=2)
    assert float(warmup_cosine(0, **kw)) == pytest.approx(0.0)
    assert float(warmup_cosine(1, **kw)) == pytest.approx(0.5)
    assert float(warmup_cosine(2, **kw)) == pytest.approx(1.0)
    # half-way through the 10 cosine steps: (base + final) / 2
    assert float(warmup_cosine(7, **kw)) == pytest.approx(0.55, rel=1e-6)
    t = 3 / 10
    assert float(warmup_cosine(5, **kw)) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * t)))
    assert float(warmup_cosine(12, **kw)) == pytest.approx(0.1)
    assert float(warmup_cosine(50, **kw)) == pytest.approx(0.1)  # held after the end


def test_teacher_temperature_warmup():
    assert float(linear_warmup(0, start=0.02, end=0.04, warmup_steps=4)) == pytest.approx(0.02)
    assert float(linear_warmup(2, start=0.02, end=0.04, warmup_steps=4)) == pytest.approx(0.03)
    assert float(linear_warmup(9, start=0.02, end=0.04, warmup_steps=4)) == pytest.approx(0.04)


def test_run_schedules():
    s = DinoSchedules(total_steps=100, lr=5e-4, min_lr=1e-6, warmup_steps=10,
                      weight_decay=0.04, weight_decay_end=0.4, momentum_teacher=0.9995,
                      teacher_temp=0.04, warmup_teacher_temp=0.02, warmup_teacher_temp_steps=20,
                      freeze_last_layer_steps=5)
    steps = np.arange(0, 101)
    lr = np.array([float(s.learning_rate(i)) for i in steps])
    assert lr.argmax() == 10 and lr[10] == pytest.approx(5e-4)
    assert float(s.wd(0)) == pytest.approx(0.04) and float(s.wd(100)) == pytest.approx(0.4)
    assert float(s.wd(50)) == pytest.approx(0.22)
    m = np.array([float(s.momentum(i)) for i in steps])
    assert m[0] == pytest.approx(0.9995) and m[-1] == pytest.approx(1.0)
    assert np.all(np.diff(m) >= -1e-7)
    assert float(s.temperature(10)) == pytest.approx(0.03)
