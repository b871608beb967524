import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from cellssl_jax.evaluate import main
from cellssl_jax.fewshot.features import load_features, save_features
from cellssl_jax.fewshot.sampling import builder_parts


def _write(path, names, counts, dim=8, seed=0, labelled=True, sha="ab" * 32, read_size="224"):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(names)), counts)
    centres = np.random.default_rng(42).normal(size=(len(names), dim)) * 3
    x = centres[labels] + rng.normal(size=(len(labels), dim))
    cells = path.with_suffix("")  # --split identifies cells by their files' sha256
    cells.mkdir(exist_ok=True)
    for i in range(len(labels)):
        (cells / f"img{i}.jpg").write_bytes(f"{path.stem} {i}".encode())
    save_features(
        path,
        x,
        labels if labelled else np.full(len(labels), -1),
        names,
        [str(cells / f"img{i}.jpg") for i in range(len(labels))],
        f"toy-{sha[:2]}",
        sha,
        read_size=read_size,
    )
    return path


@pytest.fixture
def toy(tmp_path):
    return _write(tmp_path / "toy.npz", ["eosinophil", "lymphocyte", "neutrophil"], [30, 20, 6])


def test_fewshot_split_writes_every_output(toy, tmp_path):
    out = tmp_path / "out"
    main(
        ["fewshot", "--train", str(toy), "--split", "0.7", "--n", "2,5,10", "--repeats", "3"]
        + ["--jobs", "1", "--out", str(out)]
    )
    for name in ["results.csv", "summary.json", "report.md", "curve.png", "evaluate.log"]:
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "confusion").glob("*.png"))) == 3 * 3
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 * 3 * 3
    assert {"balanced_accuracy", "sensitivity:neutrophil", "repetition", "seed"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    first = summary[0]
    assert first["repeats"] == 3 and first["preset"] == "paper-code"
    for key in ["classifier", "n_per_class", "balanced_accuracy_mean", "balanced_accuracy_std"]:
        assert key in first
    assert set(first["per_class_sensitivity_mean"]) == {"eosinophil", "lymphocyte", "neutrophil"}
    ba = [float(r["balanced_accuracy"]) for r in rows if r["classifier"] == first["classifier"]]
    assert first["balanced_accuracy_mean"] == pytest.approx(np.mean(ba[:3]), abs=1e-6)
    report = (out / "report.md").read_text()
    assert "paper-code" in report and "**balanced accuracy**" in report and "n=10" in report


def test_transfer_cli(tmp_path):
    src = _write(tmp_path / "bm.npz", ["EOS", "LYT", "NGB", "NGS"], [20, 20, 20, 20])
    tgt = _write(tmp_path / "pbc.npz", ["eosinophil", "lymphocyte", "platelet"], [9, 9, 9], seed=1)
    out = tmp_path / "tr"
    main(
        ["transfer", "--source", str(src), "--target", str(tgt), "--map", "matek_bm->acevedo"]
        + [
            "--n",
            "5",
            "--repeats",
            "2",
            "--jobs",
            "1",
            "--classifiers",
            "svm,lr",
            "--out",
            str(out),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [s["classifier"] for s in summary] == ["svm", "lr"]
    assert set(summary[0]["per_class_sensitivity_mean"]) == {"eosinophil", "lymphocyte"}
    assert "platelet" in (out / "report.md").read_text()  # named as not scored


def _error(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return str(info.value)


def test_bad_input_gives_clear_errors(toy, tmp_path):
    out = ["--out", str(tmp_path / "e"), "--repeats", "1", "--jobs", "1"]
    flat = _write(tmp_path / "flat.npz", ["a"], [10], labelled=False)
    assert "have no labels" in _error(["fewshot", "--train", str(flat), "--split", "0.7"] + out)
    msg = _error(["fewshot", "--train", str(toy), "--split", "0.7", "--n", "500"] + out)
    assert "larger than every class" in msg
    msg = _error(["fewshot", "--train", str(toy), "--split", "0.7", "--classifiers", "rf"] + out)
    assert "unknown classifier" in msg
    wide = _write(tmp_path / "wide.npz", ["eosinophil", "lymphocyte"], [5, 5], dim=16)
    msg = _error(["fewshot", "--train", str(toy), "--test", str(wide), "--n", "5"] + out)
    assert "feature dimensions differ" in msg
    assert "does not exist" in _error(["fewshot", "--train", "nope.npz", "--split", "0.7"] + out)
    (tmp_path / "cells.csv").write_text("path,label\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    for name in ("cells.csv", "array.npy"):
        msg = _error(["fewshot", "--train", str(tmp_path / name), "--split", "0.7"] + out)
        assert "is not a features file" in msg and "allow_pickle" not in msg
    assert "either --test" in _error(["fewshot", "--train", str(toy)] + out)
    bad_map = ["transfer", "--source", str(toy), "--target", str(toy), "--map", "bm->x"]
    with pytest.raises(SystemExit):  # argparse rejects it (exit code 2, message on stderr)
        main(bad_map + out)


def test_features_of_different_encoders_are_refused(toy, tmp_path):
    out = ["--repeats", "1", "--jobs", "1", "--n", "5", "--out"]
    names = ["eosinophil", "lymphocyte", "neutrophil"]
    other = _write(tmp_path / "other.npz", names, [9, 9, 9], seed=1, sha="cd" * 32)
    fewshot = ["fewshot", "--train", str(toy), "--test", str(other)]
    msg = _error(fewshot + out + [str(tmp_path / "e1")])
    assert "different encoder:" in msg and "toy-ab (sha256 abababababab" in msg
    assert "toy-cd (sha256 cdcdcdcdcdcd" in msg and "--allow_mixed_encoders" in msg
    transfer = ["transfer", "--source", str(toy), "--target", str(other), "--map",
                "acevedo->acevedo"]
    assert "source features" in _error(transfer + out + [str(tmp_path / "e2")])
    resized = _write(tmp_path / "resized.npz", names, [9, 9, 9], seed=1, read_size="native/32")
    msg = _error(fewshot[:-1] + [str(resized)] + out + [str(tmp_path / "e3")])
    assert "different read size:" in msg and "read at 224" in msg and "read at native/32" in msg

    main(fewshot + ["--allow_mixed_encoders"] + out + [str(tmp_path / "mixed")])
    report = (tmp_path / "mixed" / "report.md").read_text()
    assert "- encoder: MIXED encoder (--allow_mixed_encoders)" in report
    assert "toy-ab" in report and "toy-cd" in report


def test_same_encoder_names_it_and_unknown_read_size_is_not_compared(toy, tmp_path):
    names = ["eosinophil", "lymphocyte", "neutrophil"]
    old = _write(tmp_path / "old.npz", names, [9, 9, 9], seed=1, read_size="")
    out = tmp_path / "same"
    main(["fewshot", "--train", str(toy), "--test", str(old), "--n", "5", "--repeats", "1",
          "--jobs", "1", "--out", str(out)])
    assert "- encoder: toy-ab (sha256 abababababab, read at 224)" in (out / "report.md").read_text()


def test_an_error_is_printed_once_and_kept_in_the_log(tmp_path):
    bad = tmp_path / "missing.npz"
    cmd = [sys.executable, "-m", "cellssl_jax.evaluate", "fewshot", "--train", str(bad),
           "--split", "0.7", "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.count("does not exist") == 1, proc.stderr
    assert "python -m cellssl_jax.evaluate: error: features file" in proc.stderr
    assert "does not exist" in (tmp_path / "out" / "evaluate.log").read_text()


def test_knn_probe_scores_separable_features_and_not_shuffled_ones(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    centres = np.eye(3, 16) * 10
    feats = centres[labels] + rng.normal(size=(90, 16))
    scores = {}
    for name, y in (("clustered", labels), ("shuffled", rng.permutation(labels))):
        path = save_features(tmp_path / f"{name}.npz", feats, y, ["a", "b", "c"],
                             [f"{i}.png" for i in range(90)], "enc", "ab" * 32)
        main(["knn", "--features_file", str(path), "--out", str(tmp_path / name)])
        scores[name] = json.loads((tmp_path / name / "knn.json").read_text())["balanced_accuracy"]
    assert scores["clustered"] == 1.0
    assert scores["shuffled"] < 0.6  # chance is 1/3


def test_lab_protocol_cli_writes_its_report_and_checks_its_input(tmp_path):
    feats = _write(tmp_path / "lab.npz", ["eosinophil", "lymphocyte", "neutrophil"], [40, 40, 60])
    out = tmp_path / "lab"
    main(["lab", "--features_file", str(feats), "--methods", "svm,lr+em", "--n", "3",
          "--mixes", "balanced;neutrophil=70,lymphocyte=25,eosinophil=5", "--repeats", "2",
          "--size", "50", "--out", str(out)])
    for name in ["results.csv", "summary.csv", "summary.json", "report.md", "lab.png",
                 "evaluate.log"]:
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 2 * 2 and {r["method"] for r in rows} == {"svm", "lr+em"}
    meta = json.loads((out / "summary.json").read_text())
    assert meta["inputs"]["part"] == "validation" and "fit part" in meta["inputs"]["labelled_from"]
    for argv, message in [
        (["--methods", "rf"], "unknown method 'rf'"),
        (["--mixes", "basophil=50"], "'basophil' is not a class"),
        (["--classes", "neutrophil,basophil"], "unknown: ['basophil']"),
        (["--classes", "neutrophil,lymphocyte", "--mixes", "eosinophil=5,neutrophil=95"],
         "'eosinophil' is not a class"),
    ]:
        assert message in _error(["lab", "--features_file", str(feats), "--out", str(out), *argv])


def test_lab_protocol_on_some_classes_keeps_each_cells_part(tmp_path):
    """--classes: only those classes are labelled and counted, and every cell stays in the part
    it has with all classes (parts are cut first), so the scores are of the same cells."""
    names = ["eosinophil", "lymphocyte", "neutrophil"]
    feats = _write(tmp_path / "lab.npz", names, [40, 40, 60])
    runs = {}
    for key, extra in [("all", []), ("two", ["--classes", "neutrophil,lymphocyte"])]:
        out = tmp_path / key
        main(["lab", "--features_file", str(feats), "--methods", "lr", "--n", "3",
              "--mixes", "normal_blood", "--repeats", "1", "--size", "50", "--out", str(out),
              *extra])
        runs[key] = json.loads((out / "summary.json").read_text())["inputs"]
    assert runs["two"]["classes"] == "neutrophil,lymphocyte"
    cells = {k: int(v["folders_from"].split("(")[1].split()[0]) for k, v in runs.items()}
    fit = {k: int(v["labelled_from"].split("(")[1].split()[0]) for k, v in runs.items()}
    # the eosinophils leave; the other cells' parts do not move
    f = load_features(feats)
    parts = builder_parts(f.paths, f.labels, f.class_names)
    eos = f.labels == 0
    assert cells["two"] == cells["all"] - int(((parts == "validation") & eos).sum())
    assert fit["two"] == fit["all"] - int(((parts == "fit") & eos).sum())
    assert cells["two"] < cells["all"] and fit["two"] < fit["all"]
