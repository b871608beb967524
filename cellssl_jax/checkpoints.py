"""Orbax checkpoints of the DINO TrainState, and export of the teacher backbone as an encoder file.

The state is saved as a plain nested dict (``flax.serialization.to_state_dict``) so orbax sees
only dicts of arrays; restoring maps it back onto a freshly initialised state of the same config.
Pass *unreplicated* states (host copies) to ``save``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization, traverse_util

from cellssl_jax.dino.state import TrainState
from cellssl_jax.encoder import save_encoder


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
                           "meta": ocp.JsonCheckpointHandler()},
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, meta: dict[str, Any]) -> int:
        """Save (asynchronously) at ``state.step``; returns the step."""
        step = int(state.step)
        tree = jax.tree.map(np.asarray, serialization.to_state_dict(state))
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)
            ),
        )
        return step

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

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


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
