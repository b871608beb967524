"""The training entry point: SIGKILL mid-run + rerun resumes exactly; NaN stops the run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellssl_jax.train import KILL_AT_STEP_ENV, check_finite

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--config=configs/cpu_tiny.py",
    "--config.model.arch=xcit_nano_12_p8", "--config.model.embed_dim=32",
    "--config.model.depth=1", "--config.model.num_heads=2",
    "--config.head.out_dim=256", "--config.head.hidden_dim=64", "--config.head.bottleneck_dim=32",
    "--config.augment.global_size=16", "--config.augment.local_size=8",
    "--config.augment.n_local=1", "--config.data.image_size=20", "--config.batch_size=4",
    "--config.total_steps=12", "--config.checkpoint_every=4", "--config.log_every=1",
    "--config.optim.warmup_epochs=0.5", "--config.data.workers=2",
]


def _cmd(workdir: Path, images: Path) -> list[str]:
    return [sys.executable, "-m", "cellssl_jax.train", *TINY, f"--workdir={workdir}",
            f"--config.data.folder={images}"]


def _losses(workdir: Path) -> dict[int, float]:
    out = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        out[rec["step"]] = rec["loss"]  # a resumed run rewrites the steps after its checkpoint
    return out


def test_sigkill_then_rerun_resumes_exactly(tmp_path):
    images = tmp_path / "cells" / "a"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(images / f"{i}.png")
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jit"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    run = lambda wd: subprocess.run(_cmd(wd, images.parent), cwd=REPO, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=600)

    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-4000:]
    reference = _losses(tmp_path / "full")
    assert sorted(reference) == list(range(1, 13))
    log = (tmp_path / "full" / "train.log").read_text()
    assert log.index("compiling the train step") < log.index("step 1/12")
    step1 = next(line for line in log.splitlines() if "step 1/12" in line)
    step2 = next(line for line in log.splitlines() if "step 2/12" in line)
    assert "img/s" not in step1 and "ETA" not in step1  # compilation alone: no speed to show
    assert "img/s ETA" in step2
    assert (tmp_path / "full" / "encoder.msgpack").is_file()

    # the run kills itself after step 6, between the checkpoints at 4 and 8: steps 5-6 replay
    wd = tmp_path / "killed"
    killed = subprocess.run(_cmd(wd, images.parent), cwd=REPO, env={**env, KILL_AT_STEP_ENV: "6"},
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    assert sorted(_losses(wd)) == list(range(1, 7))
    assert sorted(int(p.name) for p in (wd / "checkpoints").iterdir()) == [4]

    resumed = run(wd)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in (wd / "train.log").read_text()
    after = _losses(wd)
    assert sorted(after) == list(range(1, 13))
    np.testing.assert_allclose([after[s] for s in range(5, 13)],
                               [reference[s] for s in range(5, 13)], rtol=1e-6)

    # finished run: returns before building the step and loaders, re-exports a missing encoder
    exported = (wd / "encoder.msgpack").read_bytes()
    (wd / "encoder.msgpack").unlink()
    again = run(wd)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "nothing to do: checkpoint step 12" in (wd / "train.log").read_text()
    assert (wd / "encoder.msgpack").read_bytes() == exported
    assert _losses(wd) == after


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
    proc = _train_cli("--config=configs/cpu_tiny.py", f"--workdir={tmp_path}", override)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and "\\" not in proc.stderr


def test_help_and_errors_name_the_data_fields(tmp_path):
    help_text = _train_cli("--help").stdout
    assert "--config.data.folder=DIR" in help_text and "--config.data.tfds_name=NAME" in help_text
    proc = _train_cli("--config=configs/cpu_tiny.py", f"--workdir={tmp_path}",
                      f"--config.data.folder={tmp_path / 'nope'}")
    assert proc.returncode != 0
    assert f"train: --config.data.folder: image folder {tmp_path / 'nope'} does not exist" in (
        proc.stderr
    )


def test_nonfinite_loss_or_parameters_stop_and_name_the_last_checkpoint(tmp_path):
    check_finite(3, {"loss": 1.5, "params_finite": 1.0}, None, tmp_path)  # finite: nothing
    with pytest.raises(SystemExit, match=r"non-finite loss \(nan\) at step 7.*step 4"):
        check_finite(7, {"loss": float("nan"), "params_finite": 1.0}, 4, tmp_path)
    # a finite loss (computed before the update) with NaN weights after it: not saved either
    with pytest.raises(SystemExit, match=r"non-finite parameters after the update at step 8"):
        check_finite(8, {"loss": 2.0, "params_finite": 0.0}, 4, tmp_path)
