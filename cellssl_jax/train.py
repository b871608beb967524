"""DINO pretraining: ``python -m cellssl_jax.train --config configs/<preset>.py --workdir DIR``.

The images: ``--config.data.folder=DIR`` (a folder of images, flat or one sub-folder per class;
labels are not used) or ``--config.data.tfds_name=NAME`` (a TFDS dataset built by
``cellssl_jax.data.builders``). Override any config field with ``--config.<field>=<value>`` (an
unknown field is an error; cellssl_jax/dino/config.py lists them all).
Data-parallel over all devices (``--config.parallel=pmap|shard_map``; ``--config.distributed=True``
for multi-host, README "Scaling"). Writes
under DIR: ``checkpoints/`` (orbax, keep-last-k; a rerun of the same command resumes exactly
from the latest), ``encoder.msgpack`` (the teacher backbone, refreshed with each checkpoint),
``metrics.jsonl``, ``tensorboard/`` and ``train.log``. Checkpoints every ``checkpoint_every``
steps and ``checkpoint_every_minutes``; Ctrl-C, SIGTERM or a preemption saves the step just
computed and exits with 130 (SIGINT) or 143 (SIGTERM, preemption).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from cellssl_jax.checkpoints import Checkpointer, CheckpointMismatch, SaveSchedule, export_teacher
from cellssl_jax.data.pipeline import FolderSource, host_batches, steps_per_epoch, tfds_source
from cellssl_jax.dino.augment import AugmentConfig
from cellssl_jax.dino.optim import make_optimizer
from cellssl_jax.dino.schedules import DinoSchedules
from cellssl_jax.dino.state import TrainState, create_train_state
from cellssl_jax.dino.step import StepConfig, make_parallel
from cellssl_jax.encoder import load_encoder
from cellssl_jax.logs import logging_to
from cellssl_jax.models.heads import DINOHead, MultiCropModel
from cellssl_jax.models.xcit import XCIT_VARIANTS, xcit

log = logging.getLogger("cellssl_jax.train")
# Test-only, "STEP[:SIGNAL]": the run sends itself SIGNAL (default SIGKILL, after writing its
# metrics and finishing pending checkpoints) once STEP is computed, before deciding whether to
# save it, so the interruption tests stop at a known step instead of racing the clock.
KILL_AT_STEP_ENV = "CELLSSL_TEST_KILL_AT_STEP"


def make_source(data: ml_collections.ConfigDict):
    """The configured image source (folder or TFDS split); user mistakes exit with a message
    that names the config field."""
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
        raise SystemExit(f"train: {f'--config.{field}: ' if field else ''}{err}") from None


def backbone_config(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """XCiT kwargs of the configured variant (JSON-serialisable; goes into the encoder file)."""
    if config.model.arch not in XCIT_VARIANTS:
        raise SystemExit(
            f"train: unknown model.arch {config.model.arch!r}; known: {', '.join(XCIT_VARIANTS)}"
        )
    kw = dict(XCIT_VARIANTS[config.model.arch])
    for field in ("embed_dim", "depth", "num_heads"):
        if config.model[field]:
            kw[field] = int(config.model[field])
    return kw


def build_models(
    config: ml_collections.ConfigDict, arch_kw: dict[str, Any]
) -> tuple[MultiCropModel, MultiCropModel]:
    """Student (with stochastic depth) and teacher (without) on ``backbone_config(config)``.

    ``arch_kw`` is passed in because callers also need it (init encoder check, export).
    """
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(config.model.dtype)
    if dtype is None:
        raise SystemExit(f"train: model.dtype must be float32 or bfloat16: {config.model.dtype}")
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


def _init_backbone(path: str, arch_kw: dict) -> dict:
    try:
        enc = load_encoder(path)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"train: init_encoder: {err}") from None
    for k in ("patch_size", "embed_dim", "depth", "num_heads"):
        if enc.meta["model_config"].get(k) != arch_kw[k]:
            raise SystemExit(
                f"train: init_encoder {path} has {k}={enc.meta['model_config'].get(k)}, "
                f"the configured model {arch_kw[k]}"
            )
    log.info("starting both backbones from %s (%s)", path, enc.source)
    return enc.variables


def check_finite(
    step: int, values: dict[str, float], last_good: int | None, directory: Path
) -> None:
    """Stop the run on a NaN/inf loss or updated parameters, before they can be saved; the
    checkpoints on disk (all from before) stay."""
    loss = values["loss"]
    if not math.isfinite(loss) or values["params_finite"] < 1.0:
        what = f"loss ({loss})" if not math.isfinite(loss) else "parameters after the update"
        raise SystemExit(
            f"train: non-finite {what} at step {step}; stopped. The last good checkpoint "
            f"is step {last_good} in {directory} (lower optim.lr or use optim.clip_mode, then "
            "rerun to resume from it)."
        )


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the records after ``last_step`` (and a line cut by a kill): a resumed run computes
    those steps again, and each step must be in the file once."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= last_step:
                keep.append(line + "\n")
        except (ValueError, KeyError):
            continue
    path.write_text("".join(keep))


class MetricWriter:
    """Process 0 only: JSONL (one record per step) + TensorBoard scalars (tensorboardX, no TF).

    Starting at ``start`` (the restored step) forgets what an earlier run logged after it.
    """

    def __init__(self, workdir: Path, enabled: bool, start: int):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            truncate_metrics(workdir / "metrics.jsonl", start)
            self.jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
            # TensorBoard hides the events of steps >= purge_step written before this writer
            self.tb = SummaryWriter(str(workdir / "tensorboard"), purge_step=start + 1)

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)

    def flush(self) -> None:
        if self.enabled:
            self.jsonl.flush()
            self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            self.tb.close()


def _changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _changed_fields(a, b, f"{prefix}{k}.")
        elif (list(a) if isinstance(a, list | tuple) else a) != (
            list(b) if isinstance(b, list | tuple) else b
        ):
            out.append(prefix + k)
    return out


def distributed_args(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``jax.distributed.initialize`` arguments from the config; the unset ones (None) JAX takes
    from the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU; the coordinator also from
    JAX_COORDINATOR_ADDRESS)."""
    return dict(
        coordinator_address=config.coordinator_address or None,
        num_processes=config.num_processes or None,
        process_id=config.process_id if config.process_id >= 0 else None,
    )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | Path) -> Path:
    """Train (or resume) DINO as configured; returns the exported teacher encoder file."""
    if config.distributed:
        jax.distributed.initialize(**distributed_args(config))
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    # process 0 logs INFO to stderr and train.log; the others only warnings (root handlers)
    with logging_to(workdir / "train.log") if is_main else contextlib.nullcontext():
        return _train(config, workdir, is_main)


def _train(config: ml_collections.ConfigDict, workdir: Path, is_main: bool) -> Path:
    """The run itself (logging already set up by ``train_and_evaluate``)."""
    source = make_source(config.data)
    n_global = jax.device_count()
    if config.batch_size % n_global:
        raise SystemExit(
            f"train: batch_size {config.batch_size} is not a multiple of the {n_global} devices"
        )
    per_device = config.batch_size // n_global
    per_epoch = steps_per_epoch(len(source), config.batch_size)
    if per_epoch == 0:
        raise SystemExit(
            f"train: {len(source)} images do not fill one batch of {config.batch_size}"
        )
    total_steps = config.total_steps or int(round(config.epochs * per_epoch))
    arch_kw = backbone_config(config)
    student, teacher = build_models(config, arch_kw)
    sched = make_schedules(config, per_epoch, total_steps)
    aug = augment_config(config)
    tx = make_tx(config, sched)
    init_bb = _init_backbone(config.init_encoder, arch_kw) if config.init_encoder else None
    state = init_state(config, student, tx, init_backbone=init_bb)

    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
    if ckpt.latest_step() is not None:
        try:
            state, meta = ckpt.restore(state)
        except CheckpointMismatch as err:
            ckpt.close()
            raise SystemExit(f"train: {err}") from None
        log.info("resumed from %s at step %d", ckpt.directory, int(state.step))
        changed = _changed_fields(meta.get("config", {}), config.to_dict())
        if changed:
            log.warning("config differs from the checkpoint's in %s; continuing with the one "
                        "given now", ", ".join(changed))
    start = int(state.step)
    n_params = sum(x.size for x in jax.tree.leaves(state.params["backbone"]))
    log.info(
        "%s (%.2fM backbone params), %d images, global batch %d on %d devices, "
        "%d steps/epoch, %d steps",
        config.model.arch,
        n_params / 1e6,
        len(source),
        config.batch_size,
        n_global,
        per_epoch,
        total_steps,
    )

    if config.export_input_size < 0:
        raise SystemExit(
            f"train: export_input_size must be >= 1, or 0 for none; got {config.export_input_size}"
        )
    export_kw = dict(
        arch=config.model.arch,
        model_config=arch_kw,
        mean=aug.mean,
        std=aug.std,
        source=f"DINO teacher, cellssl_jax.train, data "
        f"{config.data.folder or config.data.tfds_name}",
        input_size=config.export_input_size or None,
    )
    encoder_path = workdir / "encoder.msgpack"
    if start >= total_steps:  # finished: no step to compile, no loader to start
        log.info("nothing to do: checkpoint step %d >= total_steps %d; encoder %s", start,
                 total_steps, encoder_path)
        if is_main and not encoder_path.exists():
            export_teacher(encoder_path, state, **export_kw)
        ckpt.close()
        return encoder_path

    def save(host_state: TrainState, reason: str) -> None:
        ckpt.save(host_state, {"config": config.to_dict(), "step": int(host_state.step)})
        if is_main:
            export_teacher(encoder_path, host_state, **export_kw)
        log.info("checkpoint at step %d (%s); encoder -> %s", int(host_state.step), reason,
                 encoder_path)

    if config.parallel not in ("pmap", "shard_map"):
        raise SystemExit(f"train: parallel must be pmap or shard_map: {config.parallel}")
    par = make_parallel(
        config.parallel,
        student=student,
        teacher=teacher,
        tx=tx,
        cfg=StepConfig(
            augment=aug,
            schedules=sched,
            student_temp=config.dino.student_temp,
            center_momentum=config.dino.center_momentum,
        ),
    )
    rstate = par.put_state(state)
    del state
    batches = host_batches(
        source,
        batch_size_per_device=per_device,
        image_size=(config.data.image_size, config.data.image_size),
        seed=config.seed,
        start_step=start,
        workers=config.data.workers or None,
        prefetch=config.data.prefetch,
    )
    writer = MetricWriter(workdir, is_main, start)
    pending: list[tuple[int, dict]] = []
    t_last, step_last, t_start = time.time(), start, time.time()

    def flush(step: int) -> None:
        """Fetch pending metrics, stop on a non-finite loss, log a line with ETA."""
        nonlocal t_last, step_last
        if not pending:
            return
        fetched = jax.device_get(pending)
        pending.clear()
        now = time.time()
        timed = step > step_last  # the compiling first step has no speed
        ips = (step - step_last) * config.batch_size / (now - t_last) if timed else 0.0
        for s, m in fetched:
            values = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()}
            check_finite(s, values, ckpt.latest_step(), ckpt.directory)
            writer.write(s, {**values, "img_per_s": ips} if timed else values)
        writer.flush()
        eta = (total_steps - step) * (now - t_last) / max(step - step_last, 1)
        last = values
        # the first step alone has no timed steps behind it: no speed, no ETA
        speed = f" {ips:.1f} img/s ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}"
        log.info(
            "step %d/%d loss %.4f lr %.2e teacher entropy %.3f (batch-mean %.3f)%s",
            step,
            total_steps,
            last["loss"],
            last["lr"],
            last["teacher_entropy"],
            last["teacher_mean_entropy"],
            speed if timed else "",
        )
        t_last, step_last = now, step

    kill_step, _, kill_name = os.environ.get(KILL_AT_STEP_ENV, "0").partition(":")
    kill_signal = signal.Signals[kill_name or "SIGKILL"]
    schedule = SaveSchedule(
        every_steps=config.checkpoint_every,
        every_minutes=config.checkpoint_every_minutes,
        total_steps=total_steps,
        preempted=ckpt.reached_preemption,
        multihost=jax.process_count() > 1,
    )
    log.info("compiling the train step (the first step; minutes on a CPU)...")
    try:
        with schedule:
            for step in range(start + 1, total_steps + 1):
                batch = next(batches)
                rstate, metrics = par.step(rstate, par.put_batch(batch["image"]))
                pending.append((step, metrics))
                if step == start + 1:  # compilation: not counted in img/s
                    jax.block_until_ready(metrics)
                    log.info("first step (compilation included) took %.1f s",
                             time.time() - t_start)
                    t_last, step_last = time.time(), step
                    flush(step)
                if step == int(kill_step):  # test-only (KILL_AT_STEP_ENV)
                    if kill_signal == signal.SIGKILL:
                        flush(step)
                        ckpt.wait()
                    signal.raise_signal(kill_signal)
                is_log = step % config.log_every == 0
                reason = schedule.due(step, sync=is_log)
                if is_log or reason:
                    flush(step)
                if reason:
                    save(par.get_state(rstate), reason)
                if schedule.stop_signal:
                    break
    finally:
        ckpt.wait()
        ckpt.close()
        writer.close()
    if schedule.stop_signal:
        log.warning("stopped by %s at step %d: checkpoint in %s, encoder %s; rerun the same "
                    "command to resume", schedule.stop_signal.name, step, ckpt.directory,
                    encoder_path)
        raise SystemExit(schedule.exit_code)
    log.info("done: encoder %s, metrics %s", encoder_path, workdir / "metrics.jsonl")
    return encoder_path


FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config",
    None,
    "a configs/<preset>.py file; set the images with --config.data.folder=DIR or "
    "--config.data.tfds_name=NAME, any other field with --config.<field>=VALUE",
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
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


def parse_flags(argv: list[str], default_config: str | None = None) -> list[str]:
    """absl's parser, with an unknown ``--config.<field>`` reported in one line (not a traceback).

    Public so that scripts sharing the ``--config`` flag reuse it; ``default_config`` is their
    preset when ``--config`` is not given, set here because setting it parses the overrides.
    """
    try:
        if default_config is not None:
            FLAGS.set_default("config", default_config)
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
