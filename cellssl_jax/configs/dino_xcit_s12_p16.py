"""DINO's own defaults (main_dino.py) for XCiT-S12/p16: 2 x 224 + 8 x 96 crops, per-tensor
gradient clipping 3.0, teacher momentum 0.996, no teacher-temperature warm-up, ImageNet
normalisation, torchvision-style augmentations only (no rotation, perspective or vertical flip).
"""

from cellssl_jax.dino.config import default_config
from cellssl_jax.models import pixels


def get_config():
    c = default_config()
    c.data.tfds_name = "matek_bm"
    c.data.image_size = 250
    c.model.arch = "xcit_small_12_p16"
    c.augment.global_scale = (0.4, 1.0)
    c.augment.n_local = 8
    c.augment.local_scale = (0.05, 0.4)
    c.augment.vflip_p = 0.0
    c.augment.rotation_degrees = 0.0
    c.augment.perspective_p = (0.0, 0.0, 0.0)
    c.augment.antialias = True  # torchvision's RandomResizedCrop on PIL images
    # head.nlayers 3, model.drop_path_rate 0.1, momentum cosine to dino.momentum_teacher_end 1.0:
    # the defaults, as DINO (docs/DESIGN.md, "Paper code vs DINO")
    c.augment.mean = pixels.IMAGENET_MEAN
    c.augment.std = pixels.IMAGENET_STD
    c.batch_size = 1024  # 64 per GPU x 16 GPUs
    c.epochs = 100.0
    c.optim.warmup_epochs = 10.0
    c.optim.clip_mode = "norm"
    c.optim.clip = 3.0
    c.dino.warmup_teacher_temp = 0.04
    c.dino.warmup_teacher_temp_epochs = 0.0
    c.dino.momentum_teacher = 0.996
    c.export_input_size = 224  # DINO evaluates at 224, its global crop side
    return c
