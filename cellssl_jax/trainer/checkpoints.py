"""Orbax checkpoints of the DINO TrainState and the input iterator; export of the teacher
backbone as an encoder file.

One checkpoint, three items: "state" (a plain nested dict, ``flax.serialization.to_state_dict``,
so orbax sees only dicts of arrays; restoring maps it back onto a freshly initialised state of
the same config), "meta" (JSON) and "data" (the grain iterator's state, one JSON file per
process, by grain's own orbax handler). Pass *unreplicated* states (host copies) to ``save``.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization, traverse_util
from jax.experimental import multihost_utils

from cellssl_jax.dino.state import TrainState
from cellssl_jax.encoder import save_encoder

log = logging.getLogger("cellssl_jax.checkpoints")
DATA = "data"  # the iterator's item


class CheckpointMismatch(ValueError):
    """A checkpoint on disk does not have the layout of the state this version trains."""


class Checkpointer:
    """Periodic saves under ``<workdir>/checkpoints``, keeping the last ``keep`` steps."""

    def __init__(self, workdir: str | Path, keep: int = 3):
        self.directory = Path(workdir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            # registered up front so a fresh process can read a checkpoint's metadata
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler(),
                           DATA: grain.checkpoint.CheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, meta: dict[str, Any],
             data: grain.DatasetIterator | None = None) -> int:
        """Save (asynchronously; the iterator's state is taken now) at ``state.step``; returns
        the step."""
        step = int(state.step)
        tree = jax.tree.map(np.asarray, serialization.to_state_dict(state))
        items = dict(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta))
        if data is not None:
            items[DATA] = grain.checkpoint.CheckpointSave(data)
        self.manager.save(step, args=ocp.args.Composite(**items))
        return step

    def has_data(self, step: int) -> bool:
        """Whether checkpoint ``step`` holds this process's iterator state (not in checkpoints of
        older versions, nor for another process count)."""
        name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
        return (self.directory / str(step) / DATA / name).is_file()

    def restore_data(self, step: int, data: grain.DatasetIterator) -> None:
        """Set ``data`` to the iterator state saved at ``step`` (see ``has_data``)."""
        self.manager.restore(step, args=ocp.args.Composite(
            **{DATA: grain.checkpoint.CheckpointRestore(data)}))

    def restore(self, target: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """Restore ``step`` (default: latest) onto the structure of ``target`` -> (state, meta)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
            serialization.to_state_dict(target),
        )
        self._check_layout(step, abstract)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
        return serialization.from_state_dict(target, out["state"]), dict(out["meta"])

    def _check_layout(self, step: int, abstract: dict) -> None:
        """Raise ``CheckpointMismatch`` naming what differs, instead of orbax's tree trace."""
        saved = traverse_util.flatten_dict(self.manager.item_metadata(step)["state"].tree)
        want = traverse_util.flatten_dict(abstract)
        name = lambda path: ".".join(map(str, path))  # noqa: E731
        only_saved = sorted(name(k) for k in saved.keys() - want.keys())
        only_want = sorted(name(k) for k in want.keys() - saved.keys())
        shapes = sorted(f"{name(k)} {tuple(saved[k].shape)} -> {tuple(want[k].shape)}"
                        for k in saved.keys() & want.keys()
                        if tuple(saved[k].shape) != tuple(want[k].shape))
        if not (only_saved or only_want or shapes):
            return
        parts = sorted({k.split(".")[0] for k in only_saved + only_want + shapes})
        lines = [f"the checkpoint at step {step} in {self.directory} does not match the state "
                 f"this version of cellssl_jax trains (differs in: {', '.join(parts)})."]
        for title, keys in (("only in the checkpoint", only_saved),
                            ("only in this version", only_want), ("other shape", shapes)):
            if keys:
                lines.append(f"  {title}: {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}")
        if parts == ["opt_state"]:
            lines.append("  The optimiser state changed (DINO's AdamW: per-parameter step counts "
                         "and the frozen last layer), so this run cannot be resumed exactly.")
        lines.append("  Fix: train into a new --workdir (or move the checkpoints folder away); "
                     "the run's exported encoder.msgpack stays usable, and --config.init_encoder="
                     "<it> starts a new run from its backbone.")
        raise CheckpointMismatch("\n".join(lines))

    def reached_preemption(self, step: int) -> bool:
        """True on every host at the same step once any host got a preemption notice (SIGTERM
        through JAX's preemption service; multi-host runs only, always False otherwise)."""
        return self.manager.reached_preemption(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


class SaveSchedule:
    """When the training loop saves, so that an interruption loses at most the step in flight:
    every ``every_steps`` steps, at the last step, after ``every_minutes`` of wall clock (0: never),
    and at once on SIGINT / SIGTERM or a preemption, after which the run stops.

    Use as a context manager around the loop (it installs the signal handlers) and ask ``due`` at
    every step. One process: a signal sets a flag that the next ``due`` reads; a second signal
    quits at once, without saving. Multi-host: every host must save the same step or the
    collective save hangs, so no host acts on its own signal. SIGTERM is left to JAX's preemption
    service (set up by ``jax.distributed.initialize``), which tells every host; orbax's
    ``reached_preemption(step)`` (``preempted``) then turns True on all of them at the same step.
    SIGINT is re-raised as SIGTERM to take that path. The wall-clock decision is process 0's,
    broadcast, and taken only at ``sync`` steps (where the loop waits for the devices anyway).
    """

    def __init__(self, *, every_steps: int, every_minutes: float, total_steps: int,
                 preempted: Callable[[int], bool], multihost: bool,
                 clock: Callable[[], float] = time.monotonic):
        self.every_steps, self.total_steps = every_steps, total_steps
        self.every_s = every_minutes * 60
        self.preempted, self.multihost, self.clock = preempted, multihost, clock
        self.stop_signal: signal.Signals | None = None  # set: save now, then stop the run
        self._last_save = clock()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SaveSchedule:
        signums = [signal.SIGINT] if self.multihost else [signal.SIGINT, signal.SIGTERM]
        self._previous = {s: signal.signal(s, self._on_signal) for s in signums}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.multihost:
            signal.raise_signal(signal.SIGTERM)  # to JAX's preemption notifier (not handled here)
            return
        if self.stop_signal is not None:  # asked twice: stop now, as without this handler
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.stop_signal = signal.Signals(signum)
        log.warning("%s: finishing this step, then saving a checkpoint and stopping (send it again "
                    "to quit without saving)", self.stop_signal.name)

    @property
    def exit_code(self) -> int:
        """The shell's code for death by the stop signal (130 SIGINT, 143 SIGTERM)."""
        return 128 + int(self.stop_signal or 0)

    def due(self, step: int, sync: bool) -> str | None:
        """Why ``step`` (just computed) must be saved, or None; ``stop_signal`` says whether the
        run then stops. Call it at every step: the preemption sync point needs that."""
        if self.preempted(step):
            self.stop_signal = signal.SIGTERM
            reason = "preemption"
        elif self.stop_signal is not None:
            reason = self.stop_signal.name
        elif step % self.every_steps == 0:
            reason = f"every {self.every_steps} steps"
        elif step == self.total_steps:
            reason = "last step"
        elif sync and self.every_s > 0 and self._interval_passed():
            reason = f"{self.every_s / 60:g} min since the last"
        else:
            return None
        self._last_save = self.clock()
        return reason

    def _interval_passed(self) -> bool:
        passed = self.clock() - self._last_save >= self.every_s
        if self.multihost:  # the hosts' clocks differ: process 0 decides for all
            passed = bool(multihost_utils.broadcast_one_to_all(np.int32(passed)))
        return passed


def export_teacher(
    path: str | Path,
    state: TrainState,
    *,
    arch: str,
    model_config: dict,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    source: str,
    input_size: int | None = None,
) -> Path:
    """Write the teacher backbone (params + BatchNorm statistics) as an encoder file."""
    variables = {
        "params": jax.device_get(state.teacher_params["backbone"]),
        "batch_stats": jax.device_get(state.teacher_batch_stats.get("backbone", {})),
    }
    return save_encoder(path, arch, model_config, variables, mean, std, source, input_size)
