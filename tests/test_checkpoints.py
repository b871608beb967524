"""Checkpointer: a checkpoint of another state layout is refused with a message that names what
differs and the fix (not orbax's tree-mismatch trace)."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cellssl_jax.checkpoints import Checkpointer, CheckpointMismatch
from cellssl_jax.dino.optim import dino_adamw
from cellssl_jax.dino.state import TrainState

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
