"""The lab commands' surface: every option explains itself, and no library noise is printed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cellssl_jax import classify, demo, evaluate, extract, select, visualize
from cellssl_jax.feature_kinds import KINDS
from cellssl_jax.fewshot.features import load_features

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "cellssl_jax" / "assets" / "sample"


def _options(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, action) of every option of `parser` and of its sub-commands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{prefix}{name} ")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            yield prefix + action.option_strings[0], action


JOBS = [classify, demo, evaluate, extract, select, visualize]


@pytest.mark.parametrize("module", JOBS)
def test_every_option_has_help(module):
    undocumented = [name for name, action in _options(module.build_parser()) if not action.help]
    assert not undocumented


@pytest.mark.parametrize("module", JOBS)
def test_one_flag_style(module):
    """docs/CLI.md: snake_case flags, --out an output folder, --encoder a file."""
    shown = {name.split()[-1]: action for name, action in _options(module.build_parser())
             if action.help != argparse.SUPPRESS}
    assert not [f for f in shown if "-" in f[2:]]
    assert "--checkpoint" not in shown
    assert "folder" in shown["--out"].help
    if "--features" in shown:
        assert shown["--features"].choices == KINDS


def test_old_spellings_still_work_and_warn(tmp_path, capsys):
    """Hidden aliases for one release: --checkpoint, --per-class-budget/--expected-classes,
    visualize's --features FILE and --size, extract's --out FILE.npz."""
    args = extract.build_parser().parse_args(
        ["--images", "x", "--out", "o", "--checkpoint", "enc.msgpack"])
    assert args.encoder == Path("enc.msgpack")
    assert "--checkpoint is deprecated" in capsys.readouterr().err
    args = select.build_parser().parse_args(
        ["--images", "x", "--out", "o", "--per-class-budget", "2", "--expected-classes", "3"])
    assert (args.per_class_budget, args.expected_classes) == (2, 3)
    assert "use --per_class_budget" in capsys.readouterr().err
    args = visualize.build_parser().parse_args(
        ["embedding", "--features", "f.npz", "--out", "o"])
    assert args.features_file == Path("f.npz")
    args = visualize.build_parser().parse_args(
        ["attention", "--image", "c.png", "--size", "64", "--out", "o"])
    assert args.image_size == 64
    out = tmp_path / "old.npz"  # the old meaning of extract's --out: the features file
    extract.main(["--images", str(SAMPLE / "labelled"), "--features", "colorhist",
                  "--out", str(out)])
    assert load_features(out).features.shape == (96, 96)
    assert "deprecated" in capsys.readouterr().err


def test_one_error_format(tmp_path, capsys):
    """Every job ends on a user's error with `<prog>: error: <message>` and exit status 2."""
    missing = str(tmp_path / "nope")
    runs = {
        extract: ["--images", missing, "--features", "colorhist", "--out", str(tmp_path / "x")],
        select: ["--images", missing, "--budget", "2", "--out", str(tmp_path / "s")],
        visualize: ["embedding", "--features_file", missing, "--out", str(tmp_path / "v")],
        evaluate: ["fewshot", "--train", missing, "--split", "0.7", "--out", str(tmp_path / "e")],
    }
    for module, argv in runs.items():
        with pytest.raises(SystemExit) as exc:
            module.main(argv)
        prog = f"python -m {module.__name__}"
        assert exc.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"{prog}: error: ")


def test_preset_lists_its_choices(capsys):
    with pytest.raises(SystemExit):
        evaluate.build_parser().parse_args(["fewshot", "--help"])
    assert "{paper-code,sklearn-default}" in capsys.readouterr().out


def test_no_backend_noise_but_the_package_lines(tmp_path, tiny_encoder):
    """jax logs "Unable to initialize backend 'tpu'" at INFO on every machine without one."""
    image = sorted((SAMPLE / "labelled" / "monocyte").iterdir())[0]
    out = tmp_path / "att"
    proc = subprocess.run(
        [sys.executable, "-m", "cellssl_jax.visualize", "attention", "--image", str(image),
         "--encoder", str(tiny_encoder), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Unable to initialize backend" not in proc.stderr
    png = out / f"attention_{image.stem}.png"
    assert f"wrote {png}" in proc.stderr  # the package's own INFO lines still show
    assert f"wrote {png}" in (out / "visualize.log").read_text()
