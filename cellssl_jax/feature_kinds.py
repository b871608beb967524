"""The names of the feature kinds and read sizes, in a module of plain constants so that the
command-line flags (`cli.py`) and JAX-free jobs (`evaluate`) can name them without importing the
extraction machinery."""

NATIVE = "native"  # image size: every image at exactly its own size
KINDS = ("xcit", "colorhist", "xcit+colorhist")
# chosen on the PBC validation split (scripts/release/select_default.py, docs/MODEL_CARD.md):
# best of colour, encoder and both, for SVM and LR; on the test part, once: SVM 87.2 % vs
# colour 86.1 %, LR 89.3 % vs 87.1 % (the encoder of 2026-11-30)
DEFAULT_KIND = "xcit+colorhist"
