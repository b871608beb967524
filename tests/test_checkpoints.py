"""Checkpointer: a checkpoint of another state layout is refused with a message that names what
differs and the fix (not orbax's tree-mismatch trace). SaveSchedule: when the loop saves."""

import signal

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cellssl_jax.dino.optim import dino_adamw
from cellssl_jax.dino.state import TrainState
from cellssl_jax.trainer.checkpoints import Checkpointer, CheckpointMismatch, SaveSchedule

PARAMS = {"backbone": {"fc": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}}


def _state(opt_state) -> TrainState:
    return TrainState(step=jnp.int32(5), params=PARAMS, teacher_params=PARAMS, batch_stats={},
                      teacher_batch_stats={}, center=jnp.zeros(4), opt_state=opt_state,
                      rng=jnp.zeros(2, jnp.uint32))


def test_same_layout_round_trips(tmp_path):
    tx = dino_adamw(lambda s: 1e-3, lambda s: 0.04)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(_state(tx.init(PARAMS)), {"note": "x"})
    ckpt.wait()
    ckpt.close()
    ckpt = Checkpointer(tmp_path)
    restored, meta = ckpt.restore(_state(tx.init(PARAMS)))
    assert int(restored.step) == 5 and meta == {"note": "x"}
    np.testing.assert_array_equal(restored.params["backbone"]["fc"]["kernel"], 1.0)
    ckpt.close()


def test_old_optimiser_state_is_a_clear_error(tmp_path):
    old = optax.inject_hyperparams(optax.adamw)(learning_rate=1e-3, weight_decay=0.04)
    ckpt = Checkpointer(tmp_path)
    ckpt.save(_state(old.init(PARAMS)), {})
    ckpt.wait()
    ckpt.close()
    ckpt = Checkpointer(tmp_path)  # as a rerun would: a new manager over the folder
    new = dino_adamw(lambda s: 1e-3, lambda s: 0.04)
    with pytest.raises(CheckpointMismatch) as err:
        ckpt.restore(_state(new.init(PARAMS)))
    text = str(err.value)
    assert "step 5" in text and str(ckpt.directory) in text
    assert "differs in: opt_state" in text and "optimiser state changed" in text
    assert "Fix: train into a new --workdir" in text
    assert "Structure mismatch" not in text
    ckpt.close()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _schedule(clock=None, preempted=lambda step: False) -> SaveSchedule:
    return SaveSchedule(every_steps=10, every_minutes=2, total_steps=25, preempted=preempted,
                        multihost=False, clock=clock or FakeClock())


def test_schedule_saves_every_n_steps_the_last_step_and_after_the_interval():
    clock = FakeClock()
    schedule = _schedule(clock)
    saved = {s: schedule.due(s, sync=True) for s in range(1, 26)}
    assert {s: r for s, r in saved.items() if r} == {10: "every 10 steps", 20: "every 10 steps",
                                                     25: "last step"}
    clock.now = 119.0  # not yet 2 min after the save at step 20 (at time 0)
    assert schedule.due(21, sync=True) is None
    clock.now = 120.0
    assert schedule.due(22, sync=False) is None  # the clock is read only at sync steps
    assert schedule.due(23, sync=True) == "2 min since the last"
    assert schedule.due(24, sync=True) is None  # the interval restarts at that save
    clock.now = 230.0
    assert schedule.due(30, sync=True) == "every 10 steps"  # a step save restarts it too
    assert schedule.due(31, sync=True) is None
    assert schedule.stop_signal is None


def test_schedule_saves_and_stops_on_preemption():
    schedule = _schedule(preempted=lambda step: step == 7)
    assert schedule.due(6, sync=False) is None and schedule.stop_signal is None
    assert schedule.due(7, sync=False) == "preemption"
    assert schedule.stop_signal == signal.SIGTERM and schedule.exit_code == 143


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_the_next_step_then_stops_and_handlers_are_restored(signum, code):
    before = signal.getsignal(signum)
    schedule = _schedule()
    with schedule:
        assert schedule.due(3, sync=False) is None
        signal.raise_signal(signum)  # handled before raise_signal returns: no clock, no race
        assert schedule.due(4, sync=False) == signum.name
    assert schedule.stop_signal == signum and schedule.exit_code == code
    assert signal.getsignal(signum) is before
