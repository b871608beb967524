"""The lab commands' surface: every option explains itself, and no library noise is printed."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cellssl_jax import classify, evaluate, extract, select, visualize

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


@pytest.mark.parametrize("module", [classify, evaluate, extract, select, visualize])
def test_every_option_has_help(module):
    undocumented = [name for name, action in _options(module.build_parser()) if not action.help]
    assert not undocumented


def test_preset_lists_its_choices(capsys):
    with pytest.raises(SystemExit):
        evaluate.build_parser().parse_args(["fewshot", "--help"])
    assert "{paper-code,sklearn-default}" in capsys.readouterr().out


def test_no_backend_noise_but_the_package_lines(tmp_path, tiny_encoder):
    """jax logs "Unable to initialize backend 'tpu'" at INFO on every machine without one."""
    image = sorted((SAMPLE / "labelled" / "monocyte").iterdir())[0]
    out = tmp_path / "att.png"
    proc = subprocess.run(
        [sys.executable, "-m", "cellssl_jax.visualize", "attention", "--image", str(image),
         "--checkpoint", str(tiny_encoder), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Unable to initialize backend" not in proc.stderr
    assert f"wrote {out}" in proc.stderr  # the package's own INFO lines still show
