"""Class vocabularies of the four datasets and the maps between them (for direct transfer).

Every dataset class is tied to one *cell type* (a dataset-neutral name). Two cell types are
superclasses that some datasets label as a whole: "neutrophil" (segmented + band) and
"immature granulocyte" (promyelocyte + myelocyte + metamyelocyte), as in the paper's Table 3.

A source class maps to the target class of the same cell type; failing that, to the target
class of its superclass (BM NGB -> Acevedo `neutrophil`); otherwise it has no target class and
its probability is masked out in direct transfer. Target classes that no source class maps to
(Acevedo `platelet`, Matek blood MYO/MOB/LYA/PMB) cannot be predicted and are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence

NEUTROPHIL = "neutrophil"
IMMATURE_GRANULOCYTE = "immature granulocyte"

SUPERCLASSES: dict[str, tuple[str, ...]] = {
    NEUTROPHIL: ("segmented neutrophil", "band neutrophil"),
    IMMATURE_GRANULOCYTE: ("promyelocyte", "myelocyte", "metamyelocyte"),
}

# Class name as the dataset ships it -> cell type. Dict order is the fixed class order (sorted
# names, as the folders sort), which is what `scan_folder` produces on a full copy.
MATEK_BM: dict[str, str] = {
    "ABE": "abnormal eosinophil",
    "ART": "artefact",
    "BAS": "basophil",
    "BLA": "blast",
    "EBO": "erythroblast",
    "EOS": "eosinophil",
    "FGC": "faggot cell",
    "HAC": "hairy cell",
    "KSC": "smudge cell",
    "LYI": "immature lymphocyte",
    "LYT": "lymphocyte",
    "MMZ": "metamyelocyte",
    "MON": "monocyte",
    "MYB": "myelocyte",
    "NGB": "band neutrophil",
    "NGS": "segmented neutrophil",
    "NIF": "not identifiable",
    "OTH": "other cell",
    "PEB": "proerythroblast",
    "PLM": "plasma cell",
    "PMO": "promyelocyte",
}
MATEK_BLOOD: dict[str, str] = {
    "BAS": "basophil",
    "EBO": "erythroblast",
    "EOS": "eosinophil",
    "KSC": "smudge cell",
    "LYA": "atypical lymphocyte",
    "LYT": "lymphocyte",
    "MMZ": "metamyelocyte",
    "MOB": "monoblast",
    "MON": "monocyte",
    "MYB": "myelocyte",
    "MYO": "myeloblast",
    "NGB": "band neutrophil",
    "NGS": "segmented neutrophil",
    "PMB": "bilobed promyelocyte",
    "PMO": "promyelocyte",
}
ACEVEDO: dict[str, str] = {
    "basophil": "basophil",
    "eosinophil": "eosinophil",
    "erythroblast": "erythroblast",
    "ig": IMMATURE_GRANULOCYTE,
    "lymphocyte": "lymphocyte",
    "monocyte": "monocyte",
    "neutrophil": NEUTROPHIL,
    "platelet": "platelet",
}
RAABIN: dict[str, str] = {
    "Basophil": "basophil",
    "Eosinophil": "eosinophil",
    "Lymphocyte": "lymphocyte",
    "Monocyte": "monocyte",
    "Neutrophil": NEUTROPHIL,
}

DATASETS: dict[str, dict[str, str]] = {
    "matek_bm": MATEK_BM,
    "matek_blood": MATEK_BLOOD,
    "acevedo": ACEVEDO,
    "raabin": RAABIN,
}


def vocabulary(dataset: str) -> dict[str, str]:
    """Class name -> cell type of a dataset key ("matek_bm", "matek_blood", "acevedo", "raabin")."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}") from None


def cell_types(dataset: str, class_names: Sequence[str]) -> list[str]:
    """Cell type of each name of a features file (matched case-insensitively to the vocabulary)."""
    vocab = {name.casefold(): cell for name, cell in vocabulary(dataset).items()}
    unknown = [c for c in class_names if c.casefold() not in vocab]
    if unknown:
        raise ValueError(
            f"class names {unknown} are not in the {dataset} vocabulary "
            f"({', '.join(vocabulary(dataset))})"
        )
    return [vocab[c.casefold()] for c in class_names]


def superclass_of(cell_type: str) -> str | None:
    """The superclass a cell type belongs to, if any."""
    return next((sup for sup, members in SUPERCLASSES.items() if cell_type in members), None)


def transfer_map(
    source: str, source_names: Sequence[str], target: str, target_names: Sequence[str]
) -> list[int | None]:
    """For each source class: index of the target class it counts as, or None (masked out)."""
    target_index = {cell: i for i, cell in enumerate(cell_types(target, target_names))}
    mapping: list[int | None] = []
    for cell in cell_types(source, source_names):
        if cell in target_index:
            mapping.append(target_index[cell])
        else:
            sup = superclass_of(cell)
            mapping.append(target_index.get(sup) if sup else None)
    return mapping


def superclass_groups(target: str, target_names: Sequence[str]) -> dict[str, list[int]]:
    """Superclasses the target splits into >= 2 of its own classes -> those class indices.

    Their sensitivity (a member counts as correct if predicted as any member) is reported
    beside the per-class values but not averaged into balanced accuracy, as in the paper.
    """
    cells = cell_types(target, target_names)
    groups = {
        sup: [i for i, cell in enumerate(cells) if cell in members]
        for sup, members in SUPERCLASSES.items()
    }
    return {sup: idx for sup, idx in groups.items() if len(idx) >= 2}
