"""Every field a DINO training config has, with the paper's values as defaults (except where
the paper's code and DINO differ: docs/DESIGN.md, "Paper code vs DINO", and the presets).

Presets in ``cellssl_jax/configs/`` start from ``default_config()`` and change what differs, so
every preset has the same fields and ``--config.<field>=...`` on any of them rejects an unknown
field.
"""

from __future__ import annotations

import ml_collections

from cellssl_jax.models import pixels


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.folder = ""  # an image folder (class sub-folders or flat); labels are not used
    c.data.tfds_name = ""  # or a TFDS dataset built by cellssl_jax.data.builders
    c.data.tfds_split = "train"
    c.data.tfds_data_dir = ""
    c.data.image_size = 250  # host pipeline resizes every image to this square size (uint8)
    c.data.workers = 0  # grain reader threads (0: the pipeline's default)
    c.data.prefetch = 2  # images read ahead per reader thread (batches per worker process)
    c.data.worker_processes = 0  # > 0: grain worker processes read instead (docs/SPEED.md, "Input")

    c.model = ml_collections.ConfigDict()
    c.model.arch = "xcit_small_12_p8"  # a key of cellssl_jax.models.xcit.XCIT_VARIANTS
    c.model.embed_dim = 0  # 0: the variant's value; otherwise an override (small test models)
    c.model.depth = 0
    c.model.num_heads = 0
    c.model.drop_path_rate = 0.1  # student only (the teacher has none), as DINO
    c.model.dtype = "float32"  # "bfloat16" computes in bf16 (params and loss stay float32)

    c.head = ml_collections.ConfigDict()
    c.head.out_dim = 65536
    c.head.hidden_dim = 2048
    c.head.bottleneck_dim = 256
    c.head.nlayers = 3
    c.head.norm_last_layer = True

    c.augment = ml_collections.ConfigDict()
    c.augment.global_size = 224
    c.augment.global_scale = (0.5, 1.0)
    c.augment.n_local = 5
    c.augment.local_size = 96
    c.augment.local_scale = (0.1, 0.5)
    c.augment.ratio = (3 / 4, 4 / 3)
    c.augment.hflip_p = 0.5
    c.augment.vflip_p = 0.5
    c.augment.rotation_degrees = 180.0
    c.augment.perspective_distortion = 0.2
    c.augment.perspective_p = (0.5, 0.5, 0.5)  # per view: global 1, global 2, local
    c.augment.jitter = (0.4, 0.4, 0.2, 0.1)
    c.augment.jitter_p = 0.8
    c.augment.grayscale_p = 0.2
    c.augment.blur_sigma = (0.1, 2.0)
    c.augment.blur_kernel = 0  # taps; 0: 3 sigma each side (DINO's PIL blur is untruncated)
    c.augment.solarize_p = 0.2
    # Off by default, so presets made before them keep their views; the paper and DINO presets
    # set them (docs/DESIGN.md, "Paper code vs DINO").
    c.augment.fill = "reflect"  # what rotation/perspective uncover: "reflect" | "black"
    c.augment.prepass_grayscale_p = 0.0  # whole image, once, before the crops
    c.augment.prepass_hflip_p = 0.0
    c.augment.antialias = False  # resample crops as PIL does (DINO and the paper code do)
    c.augment.mean = pixels.PAPER_MEAN  # pixels in [0, 1] -> [-1, 1], as the paper
    c.augment.std = pixels.PAPER_STD

    c.batch_size = 64  # global, over all devices of all hosts
    c.epochs = 100.0
    c.total_steps = 0  # 0: epochs * steps per epoch; otherwise the run's length in steps

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 5e-4  # at batch 256; scaled by batch_size / 256
    c.optim.min_lr = 1e-6
    c.optim.warmup_epochs = 2.0
    c.optim.weight_decay = 0.04
    c.optim.weight_decay_end = 0.4
    c.optim.clip_mode = "agc"  # "agc" (paper, factor 0.32) | "norm" (DINO, per-tensor 3.0) | "none"
    c.optim.clip = 0.32
    c.optim.freeze_last_layer_epochs = 1.0

    c.dino = ml_collections.ConfigDict()
    c.dino.student_temp = 0.1
    c.dino.teacher_temp = 0.04
    c.dino.warmup_teacher_temp = 0.02
    c.dino.warmup_teacher_temp_epochs = 10.0
    c.dino.center_momentum = 0.9
    c.dino.momentum_teacher = 0.9995
    c.dino.momentum_teacher_end = 1.0  # cosine to this (DINO: 1.0; paper code: constant)

    c.init_encoder = ""  # optional encoder file to start both networks' backbones from
    # The exported encoder's input_size: the square side `extract` resizes cells to unless told
    # otherwise (any side >= 1: XCiT pads). 0 records none, so cells are read at their native
    # size (the paper's code reads every image at its own size; `extract --image_size native`).
    c.export_input_size = 0
    c.log_every = 20
    c.checkpoint_every = 500
    # also save once this much wall clock has passed since the last save (0: off), so a killed
    # run loses at most this much; SIGINT/SIGTERM and preemption save at once anyway
    c.checkpoint_every_minutes = 10.0
    c.keep_checkpoints = 3
    c.parallel = "pmap"  # the step's driver: "pmap" | "shard_map" (jax.jit + jax.shard_map)
    c.distributed = False  # call jax.distributed.initialize() (multi-host)
    # Where the cluster does not say (SLURM, Open MPI, Kubernetes and Cloud TPU do): the
    # coordinator "host:port" (process 0's), the number of processes and this one's id.
    c.coordinator_address = ""
    c.num_processes = 0  # 0: from the cluster
    c.process_id = -1  # -1: from the cluster
    return c
