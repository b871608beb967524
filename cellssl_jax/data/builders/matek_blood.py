"""Matek et al. 2019 AML-Cytomorphology_LMU peripheral blood: 15 codes, 400x400 RGBA TIFF."""

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
CLASS_NAMES = tuple(vocab.MATEK_BLOOD)

LAYOUT = (
    "expected <manual_dir>/[AML-Cytomorphology_LMU/]<CODE>/<CODE>_NNNN[_NNN].tiff "
    f"with CODE in {', '.join(CLASS_NAMES)}"
)

# Some copies prefix every file with "<CODE>___"; file_name keeps the release's own name.
_COPY_PREFIX = re.compile(r"(^|/)[A-Z]{3}___")


class MatekBlood(CellImageBuilder):
    """Peripheral-blood single cells of AML patients and controls; RGBA TIFFs stored as RGB."""

    name = "matek_blood"
    LAYOUT = LAYOUT
    DESCRIPTION = (
        "18,365 expert-labelled peripheral-blood cells (100x oil, 400x400 TIFF, alpha dropped) "
        "in 15 classes."
    )
    HOMEPAGE = "https://doi.org/10.7937/tcia.2019.36f5o9ld"
    CITATION = (
        "Matek C, Schwarz S, Spiekermann K, Marr C. Human-level recognition of blast cells in "
        "acute myeloid leukaemia with convolutional neural networks. Nat Mach Intell "
        "2019;1:538-544."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download "AML-Cytomorphology_LMU" from The Cancer Imaging Archive
    (doi:10.7937/tcia.2019.36f5o9ld, CC BY 3.0), extract it, and pass the extracted folder as
    the manual directory. {LAYOUT}. File names with a "<CODE>___" copy prefix are accepted.
    """

    def _list_records(self, manual_dir: Path) -> tuple[Path, list[Record]]:
        root = find_dataset_root(manual_dir, CLASS_NAMES, LAYOUT)
        records = class_folder_records(root, CLASS_NAMES, LAYOUT)
        for rec in records:
            rec.file_name = _COPY_PREFIX.sub(r"\1", rec.file_name)
        return root, records
