"""The DINO trainer as a library (the ``train`` CLI is flags around it), as flax's
examples/imagenet: `build(config, num_examples) -> Run`, `train_and_evaluate(config, workdir)`.

Modules: run (config -> models, schedules, augmentation, optimiser, state; `ConfigError`),
loop (the training loop, resume, signals), checkpoints (orbax: state + meta + input iterator;
encoder export), metrics (metrics.jsonl + TensorBoard), configs (`load_config`).
"""

from cellssl_jax.trainer.checkpoints import export_teacher
from cellssl_jax.trainer.configs import load_config
from cellssl_jax.trainer.loop import (
    KILL_AT_STEP_ENV,
    Stopped,
    check_finite,
    export_checkpoint,
    train_and_evaluate,
)
from cellssl_jax.trainer.run import (
    ConfigError,
    Run,
    augment_config,
    backbone_config,
    build,
    build_models,
    init_state,
    make_schedules,
    make_source,
    make_tx,
)

__all__ = [
    "KILL_AT_STEP_ENV", "ConfigError", "Run", "Stopped", "augment_config", "backbone_config",
    "build", "build_models", "check_finite", "export_checkpoint", "export_teacher", "init_state",
    "load_config", "make_schedules", "make_source", "make_tx", "train_and_evaluate",
]
