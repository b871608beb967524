"""The paper's DINO run: XCiT-S12/p8 on Matek BM (needs an accelerator).

Values from docs/DESIGN.md "Fidelity notes" (the defaults of cellssl_jax.dino.config). The
paper started from ImageNet (distilled) weights: convert timm's xcit_small_12_p8_224_dist with
`python -m cellssl_jax.convert` and pass it as --config.init_encoder=FILE. The global batch and
the number of epochs are not in our reference (~48 h on one A40); set them to your budget.
"""

from cellssl_jax.dino.config import default_config


def get_config():
    c = default_config()
    c.data.tfds_name = "matek_bm"
    c.data.image_size = 250
    c.model.arch = "xcit_small_12_p8"
    c.batch_size = 64
    c.epochs = 100.0
    return c
