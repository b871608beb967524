"""The names of the feature kinds and read sizes, in a module of plain constants so that the
command-line flags (`cli.py`) and JAX-free jobs (`evaluate`) can name them without importing the
extraction machinery."""

NATIVE = "native"  # image size: every image at exactly its own size
KINDS = ("xcit", "colorhist", "xcit+colorhist")
# chosen on the PBC validation split (scripts/release/select_default.py, docs/MODEL_CARD.md):
# best of colour, encoder and both, for SVM and LR; on the test part, once: SVM 86.6 % vs
# colour 86.1 %, LR 89.1 % vs 87.1 %
DEFAULT_KIND = "xcit+colorhist"
