import pytest

from cellssl_jax import vocab
from cellssl_jax.fewshot import classes
from cellssl_jax.fewshot.metrics import balanced_accuracy


def _scored(source, target):
    """Names of the target classes direct transfer scores, and its superclass rows."""
    tgt = list(classes.vocabulary(target))
    mapping = classes.transfer_map(source, list(classes.vocabulary(source)), target, tgt)
    names = [tgt[i] for i in sorted({t for t in mapping if t is not None})]
    return names, classes.superclass_groups(target, names)


def test_vocabularies_fixed_order_and_sizes():
    sizes = {k: len(v) for k, v in vocab.DATASETS.items()}
    assert sizes == {"matek_bm": 21, "matek_blood": 15, "acevedo": 8, "raabin": 5}
    for table in vocab.DATASETS.values():
        assert list(table) == sorted(table)  # the order scan_folder gives a full copy


def test_bm_to_matek_blood_has_the_papers_11_classes_and_two_superclasses():
    names, groups = _scored("matek_bm", "matek_blood")
    assert set(names) == {
        "EBO",
        "PMO",
        "MYB",
        "MMZ",
        "NGS",
        "NGB",
        "BAS",
        "EOS",
        "MON",
        "LYT",
        "KSC",
    }
    assert {k: sorted(names[i] for i in v) for k, v in groups.items()} == {
        "neutrophil": ["NGB", "NGS"],
        "immature granulocyte": ["MMZ", "MYB", "PMO"],
    }


def test_bm_to_acevedo_maps_into_superclasses_and_leaves_platelet_out():
    src = list(vocab.MATEK_BM)
    tgt = list(vocab.ACEVEDO)
    mapping = dict(zip(src, classes.transfer_map("matek_bm", src, "acevedo", tgt), strict=True))
    assert tgt[mapping["NGB"]] == tgt[mapping["NGS"]] == "neutrophil"
    assert {tgt[mapping[c]] for c in ("PMO", "MYB", "MMZ")} == {"ig"}
    assert mapping["BLA"] is None and mapping["PEB"] is None
    names, groups = _scored("matek_bm", "acevedo")
    assert len(names) == 7 and "platelet" not in names and groups == {}


def test_bm_to_raabin_and_case_insensitive_names():
    names, _ = _scored("matek_bm", "raabin")
    assert sorted(names) == ["Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil"]
    assert classes.cell_types("raabin", ["neutrophil"]) == ["neutrophil"]
    with pytest.raises(ValueError, match="not in the acevedo vocabulary"):
        classes.cell_types("acevedo", ["blast"])
    with pytest.raises(ValueError, match="unknown dataset"):
        classes.vocabulary("pbc")


def test_blood_to_bm_reverse_direction():
    src, tgt = list(vocab.MATEK_BLOOD), list(vocab.MATEK_BM)
    mapping = dict(zip(src, classes.transfer_map("matek_blood", src, "matek_bm", tgt), strict=True))
    assert tgt[mapping["PMO"]] == "PMO" and mapping["MYO"] is None and mapping["PMB"] is None


@pytest.mark.parametrize(
    ("target", "values", "total"),
    [
        # the paper's Table 3 per-class sensitivities (SSL, SVM, 250 BM cells/class)
        ("matek_blood", [93.1, 60.0, 79.8, 61.0, 98.4, 20.0, 34.8, 76.7, 83.5, 78.1, 21.0], 64.2),
        ("acevedo", [58.4, 92.0, 95.4, 23.4, 13.8, 33.1, 52.6], 52.7),
        ("raabin", [99.9, 86.1, 7.1, 34.4, 87.6], 63.0),
    ],
)
def test_table3_totals(target, values, total):
    names, groups = _scored("matek_bm", target)
    per_class = dict(zip(names, values, strict=True))
    per_class.update({sup: 99.0 for sup in groups})  # superclass rows must not count
    assert round(balanced_accuracy(per_class, exclude=groups), 1) == total
