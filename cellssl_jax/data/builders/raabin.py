"""Raabin-WBC (Kouzehkanan et al. 2022): 5 white-cell classes, official Train/TestA/TestB."""

from __future__ import annotations

import re
from pathlib import Path

from cellssl_jax import vocab
from cellssl_jax.data.builders.base import (
    CellImageBuilder,
    Record,
    class_folder_records,
    find_dataset_root,
)

# Fixed label order: the release's names, alphabetical (label i = CLASS_NAMES[i]); one home
# for the vocabulary: cellssl_jax/vocab.py.
CLASS_NAMES = tuple(vocab.RAABIN)

# Official split folders (matched ignoring case and punctuation) -> TFDS split names.
# TestA is the paper's test set; TestB (other microscopes/cameras) is kept as `test_b`.
SPLIT_FOLDERS = {"train": "train", "testa": "test", "testb": "test_b"}

LAYOUT = (
    "expected <manual_dir>/[Raabin-WBC/]{Train,TestA,TestB}/<class>/<image>.jpg "
    f"with class in {', '.join(CLASS_NAMES)} (TestB optional)"
)


def _split_key(folder_name: str) -> str:
    return re.sub(r"[^a-z]", "", folder_name.lower())


class Raabin(CellImageBuilder):
    """Raabin-WBC cropped white cells; splits follow the release (train / test=TestA / test_b)."""

    name = "raabin"
    LAYOUT = LAYOUT
    DESCRIPTION = (
        "Raabin-WBC cropped white blood cells (Olympus CX18 / Zeiss microscopes, smartphone "
        "cameras, ~575x575 JPEG) in 5 classes with the release's own splits: train=Train, "
        "test=TestA, test_b=TestB, all=their union."
    )
    HOMEPAGE = "https://raabindata.com/free-data/"
    CITATION = (
        "Kouzehkanan ZM, Saghari S, Tavakoli S, et al. A large dataset of white blood cells "
        "containing cell locations and types, along with segmented nuclei and cytoplasm. "
        "Sci Rep 2022;12:1123."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the cropped double-labelled Raabin-WBC archives (Train, TestA, TestB) from
    https://raabindata.com/free-data/ (registration may be needed), extract them into one
    folder, and pass it as the manual directory. {LAYOUT}.
    """

    def _official_splits(self) -> tuple[str, ...]:
        return tuple(SPLIT_FOLDERS.values())

    def _list_records(self, manual_dir: Path) -> tuple[Path, list[Record]]:
        root = find_dataset_root(
            manual_dir, ["Train", "TestA", "TestB", "Test-A", "Test_A"], LAYOUT
        )
        records = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
            split = SPLIT_FOLDERS.get(_split_key(folder.name))
            if split is None:
                raise ValueError(f"unknown split folder {folder.name!r} in {root}; {LAYOUT}")
            for rec in class_folder_records(folder, CLASS_NAMES, LAYOUT, split=split):
                rec.file_name = f"{folder.name}/{rec.file_name}"
                records.append(rec)
        return root, records
