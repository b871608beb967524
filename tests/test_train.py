"""The training entry point: SIGKILL mid-run + rerun resumes exactly; SIGTERM mid-run saves
that step, exits 143 and a rerun equals the uninterrupted run; NaN stops the run."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellssl_jax.trainer import (
    KILL_AT_STEP_ENV,
    ConfigError,
    Stopped,
    build,
    check_finite,
    load_config,
    train_and_evaluate,
)
from cellssl_jax.trainer.metrics import truncate_metrics

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config=cpu_tiny",
    "--config.model.arch=xcit_nano_12_p8", "--config.model.embed_dim=32",
    "--config.model.depth=1", "--config.model.num_heads=2",
    "--config.head.out_dim=256", "--config.head.hidden_dim=64", "--config.head.bottleneck_dim=32",
    "--config.augment.global_size=16", "--config.augment.local_size=8",
    "--config.augment.n_local=1", "--config.data.image_size=20", "--config.batch_size=4",
    "--config.total_steps=12", "--config.checkpoint_every=4", "--config.log_every=1",
    "--config.checkpoint_every_minutes=0",  # no wall-clock saves: the checkpoints are known
    "--config.optim.warmup_epochs=0.5", "--config.data.workers=2",
]


def _losses(workdir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(set(steps)), f"steps twice or out of order: {steps}"
    return {r["step"]: r["loss"] for r in records}


def _checkpoints(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the tiny config into a workdir (env: extra variables) -> the finished process; the
    first call is the uninterrupted reference run, in ``run.reference``."""
    root = tmp_path_factory.mktemp("train")
    images = root / "cells" / "a"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    base_env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(root / "jit"),
                    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")

    def run(workdir: Path, **env: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "cellssl_jax.train", *TINY, f"--workdir={workdir}",
               f"--config.data.folder={images.parent}"]
        return subprocess.run(cmd, cwd=REPO, env={**base_env, **env}, capture_output=True,
                              text=True, timeout=600)

    full = run(root / "full")
    assert full.returncode == 0, full.stderr[-4000:]
    run.reference = _losses(root / "full")
    run.full_dir = root / "full"
    return run


def test_sigkill_then_rerun_resumes_exactly(tiny_run, tmp_path):
    reference = tiny_run.reference
    assert sorted(reference) == list(range(1, 13))
    log = (tiny_run.full_dir / "train.log").read_text()
    assert log.index("compiling the train step") < log.index("step 1/12")
    step1 = next(line for line in log.splitlines() if "step 1/12" in line)
    step2 = next(line for line in log.splitlines() if "step 2/12" in line)
    assert "img/s" not in step1 and "ETA" not in step1  # compilation alone: no speed to show
    assert "img/s ETA" in step2
    records = (tiny_run.full_dir / "metrics.jsonl").read_text().splitlines()
    assert "img_per_s" not in json.loads(records[0])  # nor a 0.0 in the metrics file
    assert json.loads(records[1])["img_per_s"] > 0
    assert (tiny_run.full_dir / "encoder.msgpack").is_file()

    # the run kills itself after step 6, between the checkpoints at 4 and 8: steps 5-6 replay
    wd = tmp_path / "killed"
    killed = tiny_run(wd, **{KILL_AT_STEP_ENV: "6"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert sorted(_losses(wd)) == list(range(1, 7))
    assert _checkpoints(wd) == [4]
    # as a checkpoint of an older version (or of another process count) would be: without this
    # process's input iterator state, the input restarts at the restored global step
    shutil.rmtree(wd / "checkpoints" / "4" / "data")

    resumed = tiny_run(wd)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    log = (wd / "train.log").read_text()
    assert "resumed from" in log and "the input restarts at global step 4" in log
    after = _losses(wd)  # steps 5-6 of the killed run replaced, not repeated
    assert sorted(after) == list(range(1, 13))
    np.testing.assert_allclose([after[s] for s in range(5, 13)],
                               [reference[s] for s in range(5, 13)], rtol=1e-6)

    # finished run: returns before building the step and loaders, re-exports a missing encoder
    exported = (wd / "encoder.msgpack").read_bytes()
    (wd / "encoder.msgpack").unlink()
    again = tiny_run(wd)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "nothing to do: checkpoint step 12" in (wd / "train.log").read_text()
    assert (wd / "encoder.msgpack").read_bytes() == exported
    assert _losses(wd) == after


def test_sigterm_saves_that_step_and_the_rerun_equals_the_uninterrupted_run(tiny_run, tmp_path):
    # SIGTERM after step 6, between the checkpoints at 4 and 8
    wd = tmp_path / "stopped"
    stopped = tiny_run(wd, **{KILL_AT_STEP_ENV: "6:SIGTERM"})
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr[-4000:]
    assert _checkpoints(wd) == [4, 6]
    assert sorted(_losses(wd)) == list(range(1, 7))
    log = (wd / "train.log").read_text()
    assert "checkpoint at step 6 (SIGTERM)" in log
    # the input iterator's position is in the same checkpoint: 6 batches of 4 read
    data = wd / "checkpoints" / "6" / "data" / "process_0-of-1.json"
    assert json.loads(data.read_text()) == {"next_index": 24}
    assert f"stopped by SIGTERM at step 6: checkpoint in {wd / 'checkpoints'}" in log
    assert (wd / "encoder.msgpack").is_file()

    resumed = tiny_run(wd)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    log = (wd / "train.log").read_text()
    assert "at step 6" in log.split("resumed from")[1].splitlines()[0]
    assert "input restarts" not in log  # the iterator was restored, not rebuilt
    after = _losses(wd)
    assert sorted(after) == list(range(1, 13))
    np.testing.assert_allclose([after[s] for s in range(1, 13)],
                               [tiny_run.reference[s] for s in range(1, 13)], rtol=1e-6)
    assert (wd / "encoder.msgpack").read_bytes() == (
        tiny_run.full_dir / "encoder.msgpack").read_bytes()


def test_truncate_metrics_keeps_each_step_up_to_the_restored_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": float(s)}) for s in (1, 2, 3, 4, 5)]
    path.write_text("\n".join(lines) + '\n{"step": 6, "lo')  # the last line cut by a kill
    truncate_metrics(path, 3)
    assert path.read_text() == "\n".join(lines[:3]) + "\n"
    truncate_metrics(tmp_path / "none.jsonl", 3)  # a run without metrics yet: nothing to do
    assert not (tmp_path / "none.jsonl").exists()


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cellssl_jax.train", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "override, message",
    [
        ("--config.optim.nonsense=1", "train: unknown config field --config.optim.nonsense; "),
        ("--config.data.folderx=1", "train: unknown config field --config.data.folderx (did you "
         "mean --config.data.folder?); cellssl_jax/dino/config.py lists them all\n"),
    ],
)
def test_unknown_config_field_is_one_plain_line(tmp_path, override, message):
    proc = _train_cli("--config=cpu_tiny", f"--workdir={tmp_path}", override)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "\\" not in proc.stderr


def test_help_and_errors_name_the_data_fields(tmp_path):
    help_text = _train_cli("--help").stdout
    assert "--config.data.folder=DIR" in help_text and "--config.data.tfds_name=NAME" in help_text
    proc = _train_cli("--config=cpu_tiny", f"--workdir={tmp_path}",
                      f"--config.data.folder={tmp_path / 'nope'}")
    assert proc.returncode != 0
    assert f"train: --config.data.folder: image folder {tmp_path / 'nope'} does not exist" in (
        proc.stderr
    )


def test_nonfinite_loss_or_parameters_stop_and_name_the_last_checkpoint(tmp_path):
    check_finite(3, {"loss": 1.5, "params_finite": 1.0}, None, tmp_path)  # finite: nothing
    with pytest.raises(Stopped, match=r"non-finite loss \(nan\) at step 7.*step 4"):
        check_finite(7, {"loss": float("nan"), "params_finite": 1.0}, 4, tmp_path)
    # a finite loss (computed before the update) with NaN weights after it: not saved either
    with pytest.raises(Stopped, match=r"non-finite parameters after the update at step 8"):
        check_finite(8, {"loss": 2.0, "params_finite": 0.0}, 4, tmp_path)


def test_the_library_raises_config_errors_instead_of_exiting(tmp_path):
    """Tests, notebooks and scripts call the trainer: a mistake is a ValueError, not an exit."""
    config = load_config("cpu_tiny", {"data.folder": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"--config.data.folder: image folder .* does not exist"):
        train_and_evaluate(config, tmp_path / "run")
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ConfigError, match="5 images do not fill one batch of 32"):
        build(load_config("cpu_tiny"), num_examples=5)
    with pytest.raises(ConfigError, match="unknown model.arch 'vit'"):
        build(load_config("cpu_tiny", {"model.arch": "vit"}), num_examples=100)
