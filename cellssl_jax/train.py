"""DINO pretraining: ``python -m cellssl_jax.train --config cpu_tiny --workdir DIR``.

``--config`` is a preset name (``cellssl_jax/configs/``: cpu_tiny, paper_xcit_s12_p8,
dino_xcit_s12_p16, bundled_encoder, bundled_cpu) or a config file path. The images:
``--config.data.folder=DIR`` (a folder of images, flat or one sub-folder per class; labels are
not used) or ``--config.data.tfds_name=NAME`` (a TFDS dataset built by
``cellssl_jax.data.builders``). Override any config field with ``--config.<field>=<value>`` (an
unknown field is an error; cellssl_jax/dino/config.py lists them all).
Data-parallel over all devices (``--config.parallel=pmap|shard_map``; ``--config.distributed=True``
for multi-host, docs/TRAINING.md, "Scaling"). Writes under DIR: ``checkpoints/`` (orbax,
keep-last-k, with the input iterator's position; a rerun of the same command resumes exactly
from the latest),
``encoder.msgpack`` (the teacher backbone, refreshed with each checkpoint), ``metrics.jsonl``,
``tensorboard/`` and ``train.log``. Checkpoints every ``checkpoint_every`` steps and
``checkpoint_every_minutes``; Ctrl-C, SIGTERM or a preemption saves the step just computed and
exits with 130 (SIGINT) or 143 (SIGTERM, preemption).

Flags only: the trainer is the library ``cellssl_jax.trainer``.
"""

from __future__ import annotations

import re
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from cellssl_jax.configs import resolve
from cellssl_jax.trainer import ConfigError, Stopped, train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "a preset name (cpu_tiny, paper_xcit_s12_p8, ...) or a config file; set the images with "
    "--config.data.folder=DIR or --config.data.tfds_name=NAME, any other field with "
    "--config.<field>=VALUE",
    lock_config=True,
)
flags.DEFINE_string("workdir", None, "output directory (checkpoints, encoder, metrics, logs)")


def check_usage(argv: list[str]) -> None:
    """The command-line checks of train, shared by the scripts that reuse its flags."""
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.config is None or FLAGS.workdir is None:
        raise app.UsageError("--config and --workdir are required")


def main(argv: list[str]) -> None:
    check_usage(argv)
    try:
        train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except ConfigError as err:
        raise SystemExit(f"train: {err}") from None
    except Stopped as err:  # already logged
        raise SystemExit(err.exit_code) from None


def _resolve_config_arg(argv: list[str]) -> list[str]:
    """``--config NAME`` / ``--config=NAME`` with a preset name -> the preset's file."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + resolve(arg[len("--config="):])
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
    return out


def parse_flags(argv: list[str], default_config: str | None = None) -> list[str]:
    """absl's parser, with preset names for ``--config`` and an unknown ``--config.<field>``
    reported in one line (not a traceback).

    Public so that scripts sharing the ``--config`` flag reuse it; ``default_config`` is their
    preset when ``--config`` is not given, set here because setting it parses the overrides.
    """
    argv = _resolve_config_arg(argv)
    try:
        if default_config is not None:
            FLAGS.set_default("config", resolve(default_config))
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as err:
        raise SystemExit(f"{Path(argv[0]).stem}: {_unknown_field(err, argv)}") from None


def _unknown_field(err: BaseException, argv: list[str]) -> str:
    """ml_collections' unknown-field error (nested, quoted, multi-line) as one plain line."""
    while err.args and isinstance(err.args[0], BaseException):
        err = err.args[0]
    first, _, hint = str(err.args[0] if err.args else err).partition("\n")
    name = first.strip("\"'")
    given = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    flag = next((g for g in given if g.endswith("." + name)), f"--config.{name}")
    suggestion = re.search(r'Did you mean "([^"]+)"', hint)
    if suggestion:
        flag += f" (did you mean {flag[: -len(name)]}{suggestion.group(1)}?)"
    return f"unknown config field {flag}; cellssl_jax/dino/config.py lists them all"


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
