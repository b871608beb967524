"""The features library: featurizers (encoder, colour histogram, cell shape, side by side),
the one read-size policy, and featurizing a folder or TFDS split into `Features`
(fewshot/features.py, the file type), with the features cache, resume and the
unreadable/doubtful-image lists."""

from cellssl_jax.featurize.extraction import featurize, featurize_folder, open_source
from cellssl_jax.featurize.featurizers import (
    DEFAULT_KIND,
    KINDS,
    NATIVE,
    CellShape,
    ColourHistogram,
    Concat,
    EncoderFeatures,
    Featurizer,
    ReadSize,
    bucket_size,
    make_featurizer,
    read_size,
)

__all__ = [
    "DEFAULT_KIND",
    "KINDS",
    "NATIVE",
    "CellShape",
    "ColourHistogram",
    "Concat",
    "EncoderFeatures",
    "Featurizer",
    "ReadSize",
    "bucket_size",
    "featurize",
    "featurize_folder",
    "make_featurizer",
    "open_source",
    "read_size",
]
