"""The lab protocol: class mixes by cell type, folders drawn without repeats, the count error
on a hand-made case, and every method scored on the same draws."""

from __future__ import annotations

import numpy as np
import pytest

from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.lab import (
    count_error,
    draw_folder,
    lab_protocol,
    mix_fractions,
    score,
    unmixed,
    write_lab_report,
)

PBC = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil",
       "platelet"]


def test_named_mix_by_cell_type_on_two_vocabularies():
    f = dict(zip(PBC, mix_fractions("normal_blood", PBC), strict=True))
    assert f["neutrophil"] == pytest.approx(0.55) and f["basophil"] == pytest.approx(0.01)
    bm = ["BLA", "EOS", "LYT", "MON", "NGS", "NIF", "PMO"]
    f = dict(zip(bm, mix_fractions("normal_blood", bm), strict=True))
    # NGS is a segmented neutrophil, PMO an immature granulocyte; blasts are not in normal blood
    total = 55 + 25 + 6 + 4 + 3
    assert f["NGS"] == pytest.approx(55 / total) and f["PMO"] == pytest.approx(4 / total)
    assert f["BLA"] == f["NIF"] == 0.0


def test_named_mix_reads_class_names_as_laboratories_write_them():
    white = ["basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"]
    expected = mix_fractions("normal_blood", white)
    np.testing.assert_allclose(expected * 90, [1, 3, 25, 6, 55])
    for names in (["Basophils", "Eosinophils", "Lymphocytes", "Monocytes", "Neutrophils"],
                  ["BASOPHIL", "EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"],
                  ["Baso", "eosi", "lymp", "mono", "neut"]):  # plural, upper case, LISC's
        np.testing.assert_allclose(mix_fractions("normal_blood", names), expected)
        assert unmixed("normal_blood", names) == []
    # an unknown name gets 0 % and is said; two types of one cell share its percent
    names = ["band_neutrophil", "segmented-neutrophil", "smudge cells", "lymphocyte"]
    f = mix_fractions("normal_blood", names)
    np.testing.assert_allclose(f * 80, [27.5, 27.5, 0, 25])
    assert unmixed("normal_blood", names) == ["smudge cells"]
    assert unmixed("normal_blood", ["mon"]) == [] and unmixed("normal_blood", ["mo"]) == ["mo"]
    assert unmixed("balanced", ["x"]) == []


def test_natural_mix_follows_the_scored_part():
    np.testing.assert_allclose(mix_fractions("natural", ["a", "b"], natural=np.array([3, 1])),
                               [0.75, 0.25])
    with pytest.raises(ValueError, match="scored part's cells per class"):
        mix_fractions("natural", ["a", "b"])


def test_explicit_balanced_and_dirichlet_mixes():
    names = ["a", "b", "c"]
    np.testing.assert_allclose(mix_fractions("a=60,b=30,c=10", names), [0.6, 0.3, 0.1])
    np.testing.assert_allclose(mix_fractions("balanced", names), [1 / 3] * 3)
    d = mix_fractions("dirichlet:0.5", names, np.random.default_rng(0))
    assert d.sum() == pytest.approx(1.0) and (d >= 0).all()
    for bad, match in [("a=60,z=40", "not a class"), ("nonsense", "unknown mix"),
                       ("dirichlet:0", "concentration"), ("a=0", "no cells")]:
        with pytest.raises(ValueError, match=match):
            mix_fractions(bad, names, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no cells"):
        mix_fractions("normal_blood", ["x", "y"])


def test_draw_folder_respects_the_mix_and_never_repeats_a_cell():
    labels = np.repeat([0, 1, 2], [100, 50, 10])
    idx = draw_folder(labels, np.array([0.6, 0.3, 0.1]), 80, np.random.default_rng(0))
    assert len(set(idx.tolist())) == len(idx) == 80
    np.testing.assert_array_equal(np.bincount(labels[idx]), [48, 24, 8])
    idx = draw_folder(labels, np.array([0.5, 0.0, 0.5]), 800, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=3), [10, 0, 10])  # shrunk


def test_count_error_and_scores_hand_case():
    y = np.array([0, 0, 0, 1])  # true: 75 %, 25 %, 0 %
    assert count_error(y, np.array([50.0, 50.0, 0.0])) == pytest.approx((50 / 3, 25.0))
    assert count_error(y, np.array([75.0, 20.0, 5.0])) == pytest.approx((10 / 3, 5.0))
    s = score(y, np.array([0, 0, 1, 1]), np.array([50.0, 50.0, 0.0]))
    assert s["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def toy(n_per_class, seed):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    x = np.random.default_rng(1).normal(size=(3, 5))[y] * 3 + rng.normal(size=(len(y), 5))
    return Features(x.astype(np.float32), y, ["a", "b", "c"], [str(i) for i in range(len(y))])


def test_protocol_scores_every_method_on_the_same_draws(tmp_path):
    ev = lab_protocol(toy(30, 0), toy(100, 1), ["lr", "lr+em"], [3, 5],
                      ["balanced", "a=70,b=25,c=5"], repeats=2, size=60, intervals=True)
    assert len(ev.rows) == 2 * 2 * 2 * 2
    for key in {(r["n"], r["mix"], r["draw"]) for r in ev.rows}:
        same = [r for r in ev.rows if (r["n"], r["mix"], r["draw"]) == key]
        assert len({r["folder_cells"] for r in same}) == 1 and len(same) == 2
    for r in ev.rows:
        assert 0 <= r["coverage"] <= 1 and np.isfinite(r["count_error_mean"])
    summary = ev.summary()
    assert len(summary) == 2 * 2 * 2 and summary[0]["draws"] == 2
    paths = write_lab_report(ev, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="unknown method"):
        lab_protocol(toy(30, 0), toy(100, 1), ["rf"])


def test_natural_folders_keep_the_scored_parts_mix_and_unknown_names_are_noted(tmp_path):
    def named(f):
        return Features(f.features, f.labels, ["neutrophil", "lymphocyte", "smudge"], f.paths)

    query = toy(100, 1)
    keep = np.r_[np.flatnonzero(query.labels != 2)[::2], np.flatnonzero(query.labels == 2)[:10]]
    query = named(query.subset(np.sort(keep)))  # 50, 50 and 10 cells
    ev = lab_protocol(named(toy(30, 0)), query, ["lr"], [3], ["natural", "normal_blood"],
                      repeats=2, size=55)
    natural = [r for r in ev.rows if r["mix"] == "natural"]
    assert [r["folder_cells"] for r in natural] == [55, 55]  # 25 + 25 + 5: the part's 5:5:1
    note = "mix normal_blood gives 0 % to smudge"
    assert any(note in n for n in ev.notes)
    write_lab_report(ev, tmp_path)
    assert note in (tmp_path / "report.md").read_text()


def test_only_classes_keeps_their_labelled_rows_renumbered_in_the_given_order():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    f = Features(x, np.array([0, 1, 2, -1, 2, 0]), ["a", "b", "c"], [f"{i}.jpg" for i in range(6)])
    part = f.only_classes(["c", "a"])
    assert part.class_names == ["c", "a"]
    assert part.labels.tolist() == [1, 0, 0, 1]  # rows 0, 2, 4, 5; the unlabelled row dropped
    assert part.paths == ["0.jpg", "2.jpg", "4.jpg", "5.jpg"]
    np.testing.assert_array_equal(part.features, x[[0, 2, 4, 5]])
    for bad, message in [(["a", "z"], "unknown: \\['z'\\]"), (["a", "a"], "distinct"),
                         ([], "distinct")]:
        with pytest.raises(ValueError, match=message):
            f.only_classes(bad)
