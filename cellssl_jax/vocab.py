"""Class vocabularies of the four datasets: the one home of each class code and its cell type.

Plain Python (no JAX, no TFDS), so that both the TFDS builders (`data/builders/`, label order)
and the few-shot side (`fewshot/classes.py`, direct-transfer maps) read the same table.

Every dataset class is tied to one *cell type* (a dataset-neutral name). Two cell types are
superclasses that some datasets label as a whole: "neutrophil" (segmented + band) and
"immature granulocyte" (promyelocyte + myelocyte + metamyelocyte), as in the paper's Table 3.
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



def builder_labels(class_names: Sequence[str]) -> list[int]:
    """Each class's label in its dataset's builder, so a features file split by id matches it.

    The builders seed each class's split by its label: a folder holding only some of a
    release's classes (e.g. 7 of Matek BM's 21) numbers them 0..6 where the builder numbers
    them by the full vocabulary. Names found (exactly) in one vocabulary, or in several that
    agree, get that vocabulary's labels; a lab's own classes keep their sorted order, as the
    `image_folder` builder numbers them.
    """
    choices = {
        tuple(list(table).index(name) for name in class_names)
        for table in DATASETS.values()
        if all(name in table for name in class_names)
    }
    return list(choices.pop()) if len(choices) == 1 else list(range(len(class_names)))
