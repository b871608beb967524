"""The run's metrics: ``metrics.jsonl`` (one record per step) and TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the records after ``last_step`` (and a line cut by a kill): a resumed run computes
    those steps again, and each step must be in the file once."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line + "\n")
        except (ValueError, KeyError):
            continue
    path.write_text("".join(keep))


class MetricWriter:
    """Process 0 only: JSONL (one record per step) + TensorBoard scalars (tensorboardX, no TF).

    Starting at ``start`` (the restored step) forgets what an earlier run logged after it.
    """

    def __init__(self, workdir: Path, enabled: bool, start: int):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            truncate_metrics(workdir / "metrics.jsonl", start)
            self.jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
            # TensorBoard hides the events of steps >= purge_step written before this writer
            self.tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=start + 1)

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)

    def flush(self) -> None:
        if self.enabled:
            self.jsonl.flush()
            self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()
