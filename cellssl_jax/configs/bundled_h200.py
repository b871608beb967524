"""The bundled recipe from scratch on one GPU, on every cell a pretraining run may see (issue 24).

The stage-gpu recipe (`bundled_encoder`: XCiT-nano/p8, 128 px cells, batch 256, lr 1e-3) with
what helped the CPU stage (docs/MODEL_CARD.md, "What was tried"): more sources (the unlabelled
PBC, AML-blood, Raabin and BCD folders beside the dev parts' fit portions, collected by
`scripts/release/pretrain_bundled.py --stage h200`) and doubled hue / saturation jitter, since
stain colour is what differs between laboratories. Starting from scratch, not from the shipped
teacher: continuing it lowered the validation probe at every checkpoint (MODEL_CARD).
"""

from cellssl_jax.configs.bundled_encoder import get_config as bundled_encoder


def get_config():
    c = bundled_encoder()
    c.augment.jitter = (0.4, 0.4, 0.4, 0.2)
    c.checkpoint_every = 350  # candidates for the validation probe (exported by the run script)
    c.keep_checkpoints = 10
    return c
