"""demo: runs end to end on the bundled sample with a tiny encoder and writes every output."""

from __future__ import annotations

import csv
import json

import pytest

import cellssl_jax.encoder
from cellssl_jax import demo
from cellssl_jax.feature_kinds import DEFAULT_KIND


def test_bundled_sample_is_complete():
    for c in (
        "basophil",
        "eosinophil",
        "erythroblast",
        "ig",
        "lymphocyte",
        "monocyte",
        "neutrophil",
        "platelet",
    ):
        assert len(list((demo.SAMPLE / "labelled" / c).glob("*.jpg"))) == 12
    with open(demo.SAMPLE / "unlabelled_truth.csv", newline="") as fh:
        truth = list(csv.DictReader(fh))
    assert sorted(r["file"] for r in truth) == sorted(
        p.name for p in (demo.SAMPLE / "unlabelled").iterdir()
    )
    assert len(truth) == 100 and "CC BY 4.0" in (demo.SAMPLE / "ATTRIBUTION.md").read_text()
    size = sum(p.stat().st_size for p in demo.SAMPLE.rglob("*") if p.is_file())
    assert size < 5e6


def test_demo_end_to_end(tmp_path, tiny_encoder, capsys):
    out = tmp_path / "demo_out"
    outputs = demo.main(["--out", str(out), "--encoder", str(tiny_encoder)])
    printed = capsys.readouterr().out
    for path in outputs.values():
        assert path.exists(), path
        assert str(path) in printed  # the demo says where each output is
    for kind in ("xcit", "colorhist", DEFAULT_KIND):
        job = out / f"classify_{kind}"
        for name in ("predictions.csv", "counts.csv", "review.csv", "summary.json"):
            assert (job / name).stat().st_size > 0
        with open(job / "predictions.csv", newline="") as fh:
            assert len(list(csv.DictReader(fh))) == 100
        report = out / f"fewshot_{kind}"
        assert (report / "curve.png").exists() and (report / "results.csv").exists()
        assert (out / f"embedding_{kind}.png").exists()
    for cls in demo.ATTENTION_CELLS:
        assert (out / f"attention_{cls}.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    hist = summary["colorhist"]
    # colour histograms separate PBC classes well (measured ~80 %), a random encoder far less
    assert hist["unlabelled_accuracy"] > 0.6
    assert sum(hist["true_counts"]) == sum(hist["predicted_counts"]) == 100
    assert set(summary["xcit"]["fewshot"]) == {
        f"{c} n={n}" for c in ("svm", "lr", "knn") for n in demo.FEWSHOT_N
    }
    default = summary[DEFAULT_KIND]
    assert default["features"] == f"{summary['xcit']['features']}+colorhist_3x32+cellshape_127"
    assert sum(default["predicted_counts"]) == 100
    # the default reuses the encoder rows of the "xcit" run from the features cache
    encoded = {
        kind: json.loads((out / f"classify_{kind}" / "summary.json").read_text())
        for kind in ("xcit", DEFAULT_KIND)
    }
    assert encoded["xcit"]["encoded_cells"] == 196
    assert encoded[DEFAULT_KIND]["encoded_cells"] == 0
    assert encoded[DEFAULT_KIND]["cached_cells"] == 196
    assert "compiling the encoder" in (out / "demo.log").read_text()
    md = (out / "summary.md").read_text()
    assert "unlabelled cells: accuracy" in md and "| colorhist_3x32 |" in md


def test_missing_bundled_encoder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cellssl_jax.encoder, "DEFAULT_ENCODER", tmp_path / "absent.msgpack")
    with pytest.raises(SystemExit, match="no bundled default encoder"):
        demo.main(["--out", str(tmp_path / "o")])
