"""Every script under scripts/ still starts: `--help` exits cleanly and lists its flags."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "scripts").rglob("*.py"))


def test_scripts_are_found():
    assert {p.parent.name for p in SCRIPTS} == {"bench", "release"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_help(script):
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                         timeout=300)
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text
    # argparse exits 0 on --help, absl 1 (its usage message); both print the flags
    assert out.returncode in (0, 1) and "--" in text, text
