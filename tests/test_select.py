"""select: proposals are distinct, cover every group, and the CLI writes its CSV and sheet."""

from __future__ import annotations

import csv
import shutil
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
    assert {r["reason"] for r in rows} == {"seed"}  # no labels: today's k-means cells
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
    assert feats.encoder == "tiny+colorhist_3x32+cellshape_127" and feats.dim == 32 + 96 + 127


def truth() -> list[tuple[str, str]]:
    with open(SAMPLE / "unlabelled_truth.csv", newline="") as fh:
        return [(r["file"], r["class"]) for r in csv.DictReader(fh)]


def run_select(tmp_path: Path, *extra: str) -> list[dict]:
    out = tmp_path / "sel"
    select.main(["--images", str(SAMPLE / "unlabelled"), "--features", "colorhist",
                 "--out", str(out), *extra])  # fmt: skip
    with open(out / "selection.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_next_batch_from_a_labels_csv(tmp_path):
    labels = tmp_path / "labels.csv"
    done = truth()[:40]
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([["file", "class"], *done])
    rows = run_select(tmp_path, "--labels", str(labels), "--budget", "8", "--typical_cells", "0")
    assert list(rows[0]) == select.CSV_HEADER
    assert len({r["file"] for r in rows}) == 8
    assert not {r["file"] for r in rows} & {f for f, _ in done}  # labelled cells not again
    assert rows[0]["reason"] == "seed" and rows[1]["reason"] == "seed"  # a quarter explores
    doubts = rows[2:]
    assert {r["reason"] for r in doubts} <= {"uncertain", "short class"}
    names = {c for _, c in done}
    assert all(r["predicted"] in names and r["runner_up"] in names for r in doubts)
    assert all(0.0 <= float(r["margin"]) <= 1.0 for r in doubts)
    assert all(r["margin"] == "" for r in rows[:2])


def test_cli_labelled_folder_cells_found_in_images_are_not_proposed(tmp_path):
    """A --labelled folder of copies of 6 cells of --images: the other 94 are all that can be
    proposed."""
    labelled = tmp_path / "labelled"
    copied = []
    for name, cls in truth()[:6]:
        (labelled / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(SAMPLE / "unlabelled" / name, labelled / cls / f"copy_{name}")
        copied.append(name)
    rows = run_select(tmp_path, "--labelled", str(labelled), "--budget", "94")
    assert sorted(r["file"] for r in rows) == sorted(f for f, _ in truth()[6:])
    with pytest.raises(SystemExit, match="between 1 and the 94 cells not labelled"):
        run_select(tmp_path, "--labelled", str(labelled), "--budget", "95")


def test_cli_label_errors_are_named(tmp_path):
    labels = tmp_path / "labels.csv"
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(SAMPLE / "unlabelled" / "cell_000.jpg", flat)
    for text, extra, message in [
        ("name,kind\ncell_000.jpg,x\n", [], "columns file,class"),
        ("file,class\nnot_there.jpg,x\n", [], "not_there.jpg is not a cell of --images"),
        ("file,class\ncell_000.jpg,x\ncell_000.jpg,y\n", [], "labelled both x and y"),
        ("file,class\ncell_000.jpg,x\n", ["--method", "kcenter"], "first batch"),
        ("file,class\ncell_000.jpg,x\n", ["--labelled", str(flat)], "loose images"),
        ("file,class\ncell_000.jpg,x\n", ["--labelled", str(tmp_path / "no")], "does not exist"),
    ]:
        labels.write_text(text)
        with pytest.raises(SystemExit, match=message):
            run_select(tmp_path, "--labels", str(labels), "--budget", "4", *extra)
    with pytest.raises(SystemExit, match="does not exist"):
        run_select(tmp_path, "--labels", str(tmp_path / "none.csv"), "--budget", "4")
    both = tmp_path / "both" / "y"  # the same cell as "x" in the CSV and "y" in the folder
    both.mkdir(parents=True)
    shutil.copy(SAMPLE / "unlabelled" / "cell_000.jpg", both / "copy.jpg")
    labels.write_text("file,class\ncell_000.jpg,x\n")
    with pytest.raises(SystemExit, match="cell_000.jpg is labelled x, and y in --labelled"):
        run_select(tmp_path, "--labels", str(labels), "--labelled", str(both.parent),
                   "--budget", "4")  # fmt: skip
