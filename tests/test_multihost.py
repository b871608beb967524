"""Multi-host on one machine: 2 processes x 4 CPU devices (jax.distributed on localhost, gloo
collectives) train as 1 process x 8 devices does.

The path a TPU pod or a multi-node GPU job takes: ``--config.distributed=True`` with the
coordinator, process count and id given as config fields. Each process reads a disjoint shard of
every global batch and together they cover it; only process 0 writes the logs, metrics and the
encoder; the checkpoint the two processes write restores in one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from key_bias import assert_same_training
from PIL import Image

from cellssl_jax.data.pipeline import host_batches
from cellssl_jax.trainer import build, load_config
from cellssl_jax.trainer.checkpoints import Checkpointer

REPO = Path(__file__).resolve().parents[1]
STEPS = 3
OVERRIDES = {
    "model.arch": "xcit_nano_12_p8", "model.embed_dim": 32, "model.depth": 1,
    "model.num_heads": 2, "head.out_dim": 256, "head.hidden_dim": 64,
    "head.bottleneck_dim": 32, "augment.global_size": 16, "augment.local_size": 8,
    "augment.n_local": 1, "data.image_size": 20, "batch_size": 8, "total_steps": STEPS,
    "checkpoint_every": STEPS, "log_every": 1, "optim.lr": 8e-3, "optim.warmup_epochs": 0.5,
    "data.workers": 1, "data.prefetch": 0,  # no read-ahead: each process reads STEPS batches
}
# Runs train's CLI; records which images this process reads (through the grain pipeline) and
# when it exports the encoder.
LAUNCHER = textwrap.dedent(
    """
    import sys
    import jax
    from absl import app
    import cellssl_jax.train as train
    from cellssl_jax.trainer import loop, run

    workdir = sys.argv[1]

    class Recorded(run.FolderSource):
        def __getitem__(self, i):
            with open(f"{workdir}/read.{jax.process_index()}", "a") as f:
                f.write(f"{i}\\n")
            return super().__getitem__(i)

    export = loop.export_teacher

    def recorded_export(path, *args, **kwargs):
        with open(f"{workdir}/exported_by", "a") as f:
            f.write(f"{jax.process_index()}\\n")
        return export(path, *args, **kwargs)

    run.FolderSource, loop.export_teacher = Recorded, recorded_export
    app.run(train.main, argv=["train", f"--workdir={workdir}", *sys.argv[2:]],
            flags_parser=train.parse_flags)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(workdir: Path, images: Path, devices: int, extra: list[str]) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    args = ["--config=cpu_tiny", f"--config.data.folder={images}",
            *(f"--config.{k}={v}" for k, v in OVERRIDES.items()), *extra]
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, str(workdir), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    try:
        outs = [p.communicate(timeout=900)[0] for p in procs]
    finally:
        for p in procs:  # one failed process leaves the other waiting on a collective
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-5000:]


def _reads(path: Path, per_step: int) -> list[set[int]]:
    ids = [int(line) for line in path.read_text().split()]
    assert len(ids) == STEPS * per_step, len(ids)
    return [set(ids[s * per_step:(s + 1) * per_step]) for s in range(STEPS)]


def _restore(workdir: Path):
    """The run's last checkpoint, restored in this (single, one-device) process."""
    config = load_config("cpu_tiny", OVERRIDES)
    ckpt = Checkpointer(workdir)
    try:
        assert ckpt.latest_step() == STEPS
        state, meta = ckpt.restore(build(config, 16).init_state())
    finally:
        ckpt.close()
    assert meta["step"] == STEPS and int(state.step) == STEPS
    return state


def _losses(workdir: Path) -> list[float]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # one writer
    return [r["loss"] for r in records]


def test_two_processes_train_as_one(tmp_path, parallel="pmap"):
    """2 x 4 devices against 1 x 8. (The shard_map driver equals pmap on 8 devices:
    test_parallel.py; running it here too cost another 3-5 min of the suite on 2 cores.)"""
    images = tmp_path / "cells" / "a"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(16):  # 2 global batches an epoch: the 3 steps cross an epoch
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    port = _free_port()
    multi = [
        _launch(tmp_path / "multi", images.parent, 4,
                ["--config.distributed=True", f"--config.coordinator_address=127.0.0.1:{port}",
                 "--config.num_processes=2", f"--config.process_id={i}",
                 f"--config.parallel={parallel}"])
        for i in range(2)
    ]
    single = _launch(tmp_path / "single", images.parent, 8, [])
    _wait([*multi, single])
    multi_dir, single_dir = tmp_path / "multi", tmp_path / "single"

    # data: disjoint halves of every global batch that together are the single process's batch
    one = _reads(single_dir / "read.0", 8)
    p0, p1 = _reads(multi_dir / "read.0", 4), _reads(multi_dir / "read.1", 4)
    for s in range(STEPS):
        assert not p0[s] & p1[s] and p0[s] | p1[s] == one[s], s

    # each process's grain iterator position is in the same checkpoint, after its STEPS batches
    data = multi_dir / "checkpoints" / str(STEPS) / "data"
    states = {p.name: json.loads(p.read_text()) for p in data.glob("process_*.json")}
    assert states == {f"process_{i}-of-2.json": {"next_index": STEPS * 4} for i in range(2)}

    # process 0 alone logs, writes metrics and TensorBoard events, exports the encoder
    log = (multi_dir / "train.log").read_text()
    assert log.count("compiling the train step") == 1
    assert "global batch 8 on 8 devices" in log
    assert (multi_dir / "exported_by").read_text().split() == ["0"]
    assert (multi_dir / "encoder.msgpack").is_file()
    assert len(list((multi_dir / "tensorboard").iterdir())) == 1

    # same training: losses and the restored checkpoints (written by 2 processes, read by 1)
    np.testing.assert_allclose(_losses(multi_dir), _losses(single_dir), rtol=1e-5)
    # every leaf, optimiser state included, agrees but the class-attention key bias, which may
    # differ within STEPS x lr (gloo sums its zero gradient's noise in another order;
    # tests/key_bias.py)
    lr = OVERRIDES["optim.lr"] * OVERRIDES["batch_size"] / 256
    assert_same_training(_restore(multi_dir), _restore(single_dir), STEPS, lr)


@pytest.mark.parametrize("process_count", [2, 4])
def test_host_shards_partition_each_global_batch(process_count):
    """host_batches: process p's rows of a step are the p-th slice of the global batch, also
    when a run resumes at a global step with another process count (train's fallback when the
    checkpoint's iterator state is for another layout)."""
    source = [{"image": np.full((2, 2, 3), i, np.uint8), "label": i} for i in range(40)]
    kw = dict(batch_size_per_device=2, image_size=(2, 2), seed=3, workers=1)
    whole = host_batches(source, local_devices=8, process_index=0, process_count=1, **kw)
    next(whole)  # global step 0; the processes below start at global step 1
    local = 8 // process_count
    parts = [host_batches(source, local_devices=local, process_index=p, start_step=1,
                          process_count=process_count, **kw) for p in range(process_count)]
    for _ in range(5):  # to 3 epochs of 16
        want = next(whole)["label"].reshape(-1)
        got = [next(p)["label"].reshape(-1) for p in parts]
        assert len(set(np.concatenate(got))) == 16  # disjoint
        np.testing.assert_array_equal(np.concatenate(got), want)
