"""select: proposals are distinct, cover every group, and the CLI writes its CSV and sheet."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cellssl_jax import select
from cellssl_jax.fewshot.features import load_features

SAMPLE = Path(select.__file__).parent / "assets" / "sample"


def blobs(sizes: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian groups of the given sizes in 10-d."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(scale=20.0, size=(len(sizes), 10))
    return centres[labels] + rng.normal(size=(len(labels), 10)), labels


@pytest.mark.parametrize("method", select.METHODS)
def test_one_cell_per_group_including_a_rare_one(method):
    x, labels = blobs([80, 60, 40, 5])
    picks, represents = select.propose(x, 4, method, seed=0)
    assert len(set(picks.tolist())) == 4
    assert sorted(labels[picks].tolist()) == [0, 1, 2, 3]  # the 5-cell group is found too
    assert represents.sum() == len(x)
    assert labels[picks].tolist() == [0, 1, 2, 3]  # the cells standing for most come first
    assert represents.tolist() == [80, 60, 40, 5]


def test_kmeans_is_representative_within_a_group():
    x, _ = blobs([200])
    x[:3] += 100.0  # three outliers: k-center would take one of them, k-means must not
    picks, _ = select.propose(x, 1, "kmeans")
    assert picks[0] >= 3
    picks, _ = select.propose(x, 2, "kcenter")
    assert picks[1] < 3


def test_budget_and_method_are_checked():
    x, _ = blobs([10])
    with pytest.raises(ValueError, match="between 1 and the 10 cells"):
        select.propose(x, 11)
    with pytest.raises(ValueError, match="unknown method"):
        select.propose(x, 2, "random")


def test_cli_writes_selection_and_contact_sheet(tmp_path, capsys):
    out = tmp_path / "sel"
    images = SAMPLE / "unlabelled"
    select.main(
        [
            "--images",
            str(images),
            "--per_class_budget",
            "2",
            "--expected_classes",
            "6",
            "--features",
            "colorhist",
            "--out",
            str(out),
        ]
    )
    assert "contact_sheet" in capsys.readouterr().out
    with open(out / "selection.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["rank"]) for r in rows] == list(range(1, 13))
    assert len({r["file"] for r in rows}) == 12
    assert all((images / r["file"]).is_file() for r in rows)
    assert sum(int(r["represents_cells"]) for r in rows) == 100
    sizes = [int(r["represents_cells"]) for r in rows]
    assert sizes == sorted(sizes, reverse=True)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size == (960, 2 * (96 + 14))


def test_cli_budget_errors(tmp_path):
    base = [
        "--images",
        str(SAMPLE / "unlabelled"),
        "--out",
        str(tmp_path),
        "--features",
        "colorhist",
    ]
    for extra, message in [
        ([], "either --budget"),
        (["--budget", "4", "--per_class_budget", "2", "--expected_classes", "2"], "either"),
        (["--per_class_budget", "2"], "go together"),
        (["--budget", "0"], "at least 1"),
        (["--budget", "101"], "between 1 and the 100 cells"),
    ]:
        with pytest.raises(SystemExit, match=message):
            select.main(base + extra)
    with pytest.raises(SystemExit, match="does not exist"):
        select.main(["--images", str(tmp_path / "none"), "--budget", "2", "--out", str(tmp_path)])


def test_default_features_are_the_pair_classify_uses(tmp_path, tiny_encoder):
    out = tmp_path / "sel"
    select.main(["--images", str(SAMPLE / "unlabelled"), "--budget", "4",
                 "--encoder", str(tiny_encoder), "--out", str(out)])
    feats = load_features(out / "features.npz")
    assert feats.encoder == "tiny+colorhist_3x32" and feats.dim == 32 + 96
