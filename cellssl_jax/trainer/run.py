"""A run's parts from its config: source, models, schedules, augmentation, optimiser, state.

Everything a user can get wrong in a config raises `ConfigError` naming the field, so tests,
notebooks and scripts can call these; only the ``train`` CLI turns it into an exit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import ml_collections
import optax

from cellssl_jax.data.pipeline import steps_per_epoch
from cellssl_jax.data.reading import FolderSource, tfds_source
from cellssl_jax.dino.augment import AugmentConfig
from cellssl_jax.dino.optim import make_optimizer
from cellssl_jax.dino.schedules import DinoSchedules
from cellssl_jax.dino.state import TrainState, create_train_state
from cellssl_jax.encoder import load_encoder
from cellssl_jax.models.heads import DINOHead, MultiCropModel
from cellssl_jax.models.xcit import XCIT_VARIANTS, xcit

log = logging.getLogger("cellssl_jax.train")


class ConfigError(ValueError):
    """A mistake in the run's config or inputs (the message names the field)."""


def make_source(data: ml_collections.ConfigDict):
    """The configured image source (folder or TFDS split)."""
    field = ""
    try:
        if data.folder and data.tfds_name:
            raise ValueError("set only one of data.folder and data.tfds_name")
        if data.folder:
            field = "data.folder"
            return FolderSource(data.folder)
        if data.tfds_name:
            field = "data.tfds_name"
            return tfds_source(data.tfds_name, data.tfds_split, data.tfds_data_dir or None)
        raise ValueError("no data: set --config.data.folder=DIR or --config.data.tfds_name=NAME")
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"{f'--config.{field}: ' if field else ''}{err}") from None


def backbone_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """XCiT kwargs of the configured variant (JSON-serialisable; goes into the encoder file)."""
    if config.model.arch not in XCIT_VARIANTS:
        raise ConfigError(
            f"unknown model.arch {config.model.arch!r}; known: {', '.join(XCIT_VARIANTS)}"
        )
    kw = dict(XCIT_VARIANTS[config.model.arch])
    for field in ("embed_dim", "depth", "num_heads"):
        if config.model[field]:
            kw[field] = int(config.model[field])
    return kw


def build_models(
    config: ml_collections.ConfigDict, arch_kw: dict[str, Any]
) -> tuple[MultiCropModel, MultiCropModel]:
    """Student (with stochastic depth) and teacher (without) on ``backbone_config(config)``."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(config.model.dtype)
    if dtype is None:
        raise ConfigError(f"model.dtype must be float32 or bfloat16: {config.model.dtype}")
    h = config.head
    head = DINOHead(
        out_dim=h.out_dim,
        hidden_dim=h.hidden_dim,
        bottleneck_dim=h.bottleneck_dim,
        nlayers=h.nlayers,
        norm_last_layer=h.norm_last_layer,
        dtype=dtype,
    )

    def backbone(rate: float):
        return xcit(
            config.model.arch, **arch_kw, drop_path_rate=rate, bn_axis_name="batch", dtype=dtype
        )

    student = MultiCropModel(backbone(config.model.drop_path_rate), head)
    return student, MultiCropModel(backbone(0.0), head)


def augment_config(config: ml_collections.ConfigDict) -> AugmentConfig:
    return AugmentConfig(
        **{k: tuple(v) if isinstance(v, list | tuple) else v for k, v in config.augment.items()}
    )


def make_schedules(
    config: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
) -> DinoSchedules:
    ep = lambda e: int(round(e * steps_per_epoch))  # noqa: E731 - epochs -> steps
    o, d = config.optim, config.dino
    return DinoSchedules(
        total_steps=total_steps,
        lr=o.lr * config.batch_size / 256.0,
        min_lr=o.min_lr,
        warmup_steps=ep(o.warmup_epochs),
        weight_decay=o.weight_decay,
        weight_decay_end=o.weight_decay_end,
        momentum_teacher=d.momentum_teacher,
        momentum_teacher_end=d.momentum_teacher_end,
        teacher_temp=d.teacher_temp,
        warmup_teacher_temp=d.warmup_teacher_temp,
        warmup_teacher_temp_steps=ep(d.warmup_teacher_temp_epochs),
        freeze_last_layer_steps=ep(o.freeze_last_layer_epochs),
    )


def make_tx(
    config: ml_collections.ConfigDict, sched: DinoSchedules
) -> optax.GradientTransformationExtraArgs:
    """The configured clipping + AdamW on the run's schedules and last-layer freeze."""
    return make_optimizer(
        lr=sched.learning_rate,
        weight_decay=sched.wd,
        clip_mode=config.optim.clip_mode,
        clip=config.optim.clip,
        freeze_last_layer_steps=sched.freeze_last_layer_steps,
    )


def init_state(
    config: ml_collections.ConfigDict,
    student: MultiCropModel,
    tx: optax.GradientTransformation,
    init_backbone: dict | None = None,
) -> TrainState:
    """The run's state at step 0 (seeded by ``config.seed``), built on a global-size sample."""
    size = config.augment.global_size
    sample = [jnp.zeros((1, size, size, 3))]
    return create_train_state(student, tx, config.seed, sample, init_backbone=init_backbone)


def init_backbone(path: str, arch_kw: dict) -> dict:
    """Variables of the encoder file `path`, checked against the configured backbone."""
    try:
        enc = load_encoder(path)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"init_encoder: {err}") from None
    for k in ("patch_size", "embed_dim", "depth", "num_heads"):
        if enc.meta["model_config"].get(k) != arch_kw[k]:
            raise ConfigError(
                f"init_encoder {path} has {k}={enc.meta['model_config'].get(k)}, "
                f"the configured model {arch_kw[k]}"
            )
    log.info("starting both backbones from %s (%s)", path, enc.source)
    return enc.variables


@dataclass(frozen=True)
class Run:
    """What `build` makes of a config: every part of a run but its data and its state."""

    config: ml_collections.ConfigDict
    arch_kw: dict[str, Any]
    student: MultiCropModel
    teacher: MultiCropModel
    schedules: DinoSchedules
    augment: AugmentConfig
    tx: optax.GradientTransformationExtraArgs
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.schedules.total_steps

    def init_state(self) -> TrainState:
        """Step 0: seeded by ``config.seed``, backbones from ``config.init_encoder`` if set."""
        start = init_backbone(self.config.init_encoder, self.arch_kw) \
            if self.config.init_encoder else None
        return init_state(self.config, self.student, self.tx, init_backbone=start)


def build(config: ml_collections.ConfigDict, num_examples: int) -> Run:
    """The run of `config` on `num_examples` images (they set the steps per epoch)."""
    if config.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1: {config.batch_size}")
    per_epoch = steps_per_epoch(num_examples, config.batch_size)
    if per_epoch == 0:
        raise ConfigError(f"{num_examples} images do not fill one batch of {config.batch_size}")
    if config.export_input_size < 0:
        raise ConfigError(
            f"export_input_size must be >= 1, or 0 for none; got {config.export_input_size}"
        )
    if config.parallel not in ("pmap", "shard_map"):
        raise ConfigError(f"parallel must be pmap or shard_map: {config.parallel}")
    total_steps = config.total_steps or int(round(config.epochs * per_epoch))
    arch_kw = backbone_config(config)
    student, teacher = build_models(config, arch_kw)
    sched = make_schedules(config, per_epoch, total_steps)
    return Run(config=config, arch_kw=arch_kw, student=student, teacher=teacher,
               schedules=sched, augment=augment_config(config), tx=make_tx(config, sched),
               steps_per_epoch=per_epoch)
