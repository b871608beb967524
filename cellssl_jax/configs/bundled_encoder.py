"""The bundled encoder's recipe: XCiT-nano/p8 on 128 px cells, DINO's small-model settings.

Made for one GPU and a few minutes (see docs/MODEL_CARD.md and scripts/release/pretrain_bundled.py);
set `--config.data.folder` to the unlabelled cells and `--config.total_steps` to the budget.
"""

from cellssl_jax.dino.config import default_config


def get_config():
    c = default_config()
    c.data.image_size = 128
    c.data.workers = 16
    c.data.prefetch = 4  # 64 images in flight: a buffer of batches was slow (pipeline.py)
    c.model.arch = "xcit_nano_12_p8"  # 3 M parameters: 12 MB, cheap on a laptop CPU
    c.model.drop_path_rate = 0.0
    c.head.out_dim = 16384
    c.augment.global_size = 112
    c.augment.global_scale = (0.3, 1.0)
    c.augment.n_local = 6
    c.augment.local_size = 48
    c.augment.local_scale = (0.05, 0.3)
    c.batch_size = 256
    c.optim.lr = 1e-3  # at batch 256
    c.optim.warmup_epochs = 10.0
    c.optim.clip_mode = "norm"  # DINO's per-tensor clip 3.0
    c.optim.clip = 3.0
    c.dino.momentum_teacher = 0.996
    c.dino.warmup_teacher_temp = 0.04  # = teacher_temp: no warm-up
    c.export_input_size = 352  # read best of 128/224/352 (docs/MODEL_CARD.md), as shipped
    return c
