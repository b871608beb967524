"""The bundled encoder continued on a 2-core CPU: more cells, stronger colour augmentation.

Starts from the H200-trained encoder (`--config.init_encoder`, set by
scripts/release/pretrain_bundled.py) with a fresh head; 96 px global crops of 128 px cells so a
step of 32 cells costs a few seconds on two cores. Hue / saturation jitter is doubled (stain colour
differs between laboratories: the added Raabin, BCD and AML cells come from four more).
"""

from cellssl_jax.dino.config import default_config


def get_config():
    c = default_config()
    c.data.image_size = 128
    c.data.workers = 2
    c.model.arch = "xcit_nano_12_p8"  # the bundled encoder's
    c.model.drop_path_rate = 0.0
    c.head.out_dim = 16384
    c.augment.global_scale = (0.3, 1.0)
    c.augment.local_scale = (0.05, 0.3)
    c.augment.global_size = 96
    c.augment.n_local = 4
    c.augment.local_size = 48
    c.augment.jitter = (0.4, 0.4, 0.4, 0.2)
    c.augment.grayscale_p = 0.2
    c.batch_size = 32
    c.optim.lr = 5e-4  # at batch 256 (x 32/256): half the first stage's, for a continuation
    c.optim.warmup_epochs = 1.0
    c.optim.freeze_last_layer_epochs = 0.5
    c.optim.clip_mode = "norm"  # DINO's per-tensor clip 3.0
    c.optim.clip = 3.0
    # a ~640-step run: DINO's 0.996 would leave the teacher near its start
    # (docs/TRAINING.md, cpu_tiny)
    c.dino.momentum_teacher = 0.99
    c.dino.warmup_teacher_temp = 0.04  # = teacher_temp: no warm-up
    c.export_input_size = 352  # re-chosen on validation (docs/MODEL_CARD.md)
    c.log_every = 10
    c.checkpoint_every = 30  # the shipped file is step 30 (chosen on validation, MODEL_CARD)
    c.keep_checkpoints = 30  # all kept: the probe curve (docs/MODEL_CARD.md) reads them
    return c
