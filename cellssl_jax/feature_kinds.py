"""The names of the feature kinds and read sizes, in a module of plain constants so that the
command-line flags (`cli.py`) and JAX-free jobs (`evaluate`) can name them without importing the
extraction machinery."""

NATIVE = "native"  # image size: every image at exactly its own size
# the encoder, colour histograms, cell shape (featurize/cellshape.py), side by side in this order
KINDS = ("xcit", "colorhist", "cellshape", "xcit+colorhist", "colorhist+cellshape",
         "xcit+colorhist+cellshape")
# chosen on the PBC and BM validation parts with the lab protocol (docs/LAB_COUNT.md, third
# pass): cell shape and texture beside the encoder and colour; test part, PBC normal-blood
# folders: +5.6 / +4.2 points at 5 / 20 labels per class over xcit+colorhist with LR.
# Before it, "xcit+colorhist" (scripts/release/select_default.py, docs/MODEL_CARD.md)
DEFAULT_KIND = "xcit+colorhist+cellshape"
