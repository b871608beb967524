"""Acevedo et al. 2020 PBC dataset (normal peripheral blood, CellaVision): 8 classes, JPEG."""

from __future__ import annotations

from pathlib import Path

import tensorflow_datasets as tfds

from cellssl_jax import vocab
from cellssl_jax.data.builders.base import (
    CellImageBuilder,
    Record,
    class_folder_records,
    find_dataset_root,
)

# Fixed label order: the release's names, alphabetical (label i = CLASS_NAMES[i]); one home
# for the vocabulary: cellssl_jax/vocab.py.
CLASS_NAMES = tuple(vocab.ACEVEDO)

# Fine sub-types carried by the file-name prefix (e.g. "MMY_12345.jpg"): ig = promyelocyte
# (PMY), myelocyte (MY), metamyelocyte (MMY) or unspecified (IG); neutrophil = segmented (SNE),
# band (BNE) or unspecified (NEUTROPHIL). Other classes keep their own prefix (BA, EO, ...).
SUBTYPE_NOTE = "upper-case file-name prefix before the first '_', e.g. SNE, BNE, PMY, MY, MMY, IG"

LAYOUT = (
    "expected <manual_dir>/[PBC_dataset_normal_DIB/]<class>/<PREFIX>_NNNNN.jpg "
    f"with class in {', '.join(CLASS_NAMES)}"
)


def subtype_of(file_name: str) -> str:
    """The sub-type code from a file name such as "neutrophil/SNE_123.jpg" -> "SNE"."""
    return Path(file_name).name.split("_", 1)[0].upper()


class Acevedo(CellImageBuilder):
    """Healthy peripheral-blood cells; the `subtype` feature keeps the finer ig/neutrophil codes."""

    name = "acevedo"
    LAYOUT = LAYOUT
    DESCRIPTION = (
        "17,092 normal peripheral-blood cells (CellaVision DM96, May-Grünwald-Giemsa, mostly "
        f"360x363 JPEG) in 8 classes, byte-identical duplicates removed. subtype: {SUBTYPE_NOTE}."
    )
    HOMEPAGE = "https://doi.org/10.17632/snkd93bnjr.1"
    CITATION = (
        "Acevedo A, Merino A, Alférez S, Molina Á, Boldú L, Rodellar J. A dataset of microscopic "
        "peripheral blood cell images for development of automatic recognition systems. "
        "Data in Brief 2020;30:105474."
    )
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download "PBC_dataset_normal_DIB.zip" from Mendeley Data (doi:10.17632/snkd93bnjr.1,
    CC BY 4.0), unzip it, and pass the extracted folder as the manual directory. {LAYOUT}.
    The release's .DS_Store junk and byte-identical duplicates are dropped and reported.
    """

    def _extra_features(self) -> dict:
        return {"subtype": tfds.features.Text(doc=SUBTYPE_NOTE)}

    def _list_records(self, manual_dir: Path) -> tuple[Path, list[Record]]:
        root = find_dataset_root(manual_dir, CLASS_NAMES, LAYOUT)
        records = class_folder_records(root, CLASS_NAMES, LAYOUT)
        for rec in records:
            rec.extra = {"subtype": subtype_of(rec.file_name)}
        return root, records
