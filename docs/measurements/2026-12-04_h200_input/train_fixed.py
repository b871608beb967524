"""`python -m cellssl_jax.train` with the reader out of the loop: the first batch that the
configured reader gives is fed to every step (copied to the device each step as usual), so the
logged img/s is the training loop's own ceiling: step, dispatch, metrics, checkpoints, no
decoding. Same flags as cellssl_jax.train; same compiled step (the data settings are outside it).

    python docs/measurements/2026-12-04_h200_input/train_fixed.py --config bundled_h200 ...
"""

from __future__ import annotations

import grain
from absl import app

from cellssl_jax import train
from cellssl_jax.trainer import loop


class FixedBatch(grain.DatasetIterator):
    """The parent's first batch, forever; state, saving and closing are the parent's."""

    def __init__(self, parent: grain.DatasetIterator):
        super().__init__(parent)
        self.batch = next(parent)

    def __next__(self):
        return self.batch

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)

    def close(self):
        self._parent.close()


_real_input = loop._input
loop._input = lambda *args, **kwargs: FixedBatch(_real_input(*args, **kwargs))

if __name__ == "__main__":
    app.run(train.main, flags_parser=train.parse_flags)
