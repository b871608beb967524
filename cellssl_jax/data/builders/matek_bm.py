"""Matek et al. 2021 bone-marrow cytomorphology (MLL): 21 codes, 250x250 JPEG."""

from __future__ import annotations

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
CLASS_NAMES = tuple(vocab.MATEK_BM)

LAYOUT = (
    "expected <manual_dir>/[BM_cytomorphology_data/]<CODE>/[<numbered sub-folder>/]"
    "<CODE>_NNNNN.jpg "
    f"with CODE in {', '.join(CLASS_NAMES)}"
)


class MatekBm(CellImageBuilder):
    """Bone-marrow single cells, the paper's DINO pretraining data (train split)."""

    name = "matek_bm"
    LAYOUT = LAYOUT
    DESCRIPTION = (
        "171,374 expert-annotated bone-marrow cells (May-Grünwald-Giemsa, 40x oil, 250x250 "
        "JPEG) in 21 classes."
    )
    HOMEPAGE = "https://doi.org/10.7937/TCIA.AXH3-T579"
    CITATION = (
        "Matek C, Krappe S, Münzenmayer C, Haferlach T, Marr C. Highly accurate differentiation "
        "of bone marrow cell morphologies using deep neural networks on a large image data set. "
        "Blood 2021;138(20):1917-1927."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download "Bone-Marrow-Cytomorphology_MLL_Helmholtz_Fraunhofer" from The Cancer Imaging
    Archive (doi:10.7937/TCIA.AXH3-T579, CC BY 4.0), extract it, and pass the extracted folder
    as the manual directory. {LAYOUT}. A subset of the class folders is accepted.
    """

    def _list_records(self, manual_dir: Path) -> tuple[Path, list[Record]]:
        root = find_dataset_root(manual_dir, CLASS_NAMES, LAYOUT)
        return root, class_folder_records(root, CLASS_NAMES, LAYOUT)
