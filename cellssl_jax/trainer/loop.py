"""Train (or resume) DINO as configured: ``train_and_evaluate(config, workdir) -> encoder path``.

Writes under workdir: ``checkpoints/`` (orbax, keep-last-k: state, meta and the input
iterator; a rerun resumes exactly from the latest), ``encoder.msgpack`` (the teacher backbone,
refreshed with each checkpoint), ``metrics.jsonl``, ``tensorboard/`` and ``train.log``.
Mistakes in the config raise `ConfigError`; a signal, a preemption or a non-finite loss end the
run with `Stopped` (after saving what can be saved; its message is logged).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from cellssl_jax.data.pipeline import host_batches
from cellssl_jax.dino.state import TrainState
from cellssl_jax.dino.step import StepConfig, make_parallel
from cellssl_jax.logs import logging_to
from cellssl_jax.trainer.checkpoints import (
    Checkpointer,
    CheckpointMismatch,
    SaveSchedule,
    export_teacher,
)
from cellssl_jax.trainer.metrics import MetricWriter
from cellssl_jax.trainer.run import ConfigError, Run, build, make_source

log = logging.getLogger("cellssl_jax.train")
# Test-only, "STEP[:SIGNAL]": the run sends itself SIGNAL (default SIGKILL, after writing its
# metrics and finishing pending checkpoints) once STEP is computed, before deciding whether to
# save it, so the interruption tests stop at a known step instead of racing the clock.
KILL_AT_STEP_ENV = "CELLSSL_TEST_KILL_AT_STEP"


class Stopped(Exception):
    """The run stopped before its last step; ``exit_code`` is the shell's for the cause."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def check_finite(
    step: int, values: dict[str, float], last_good: int | None, directory: Path
) -> None:
    """Stop the run on a NaN/inf loss or updated parameters, before they can be saved; the
    checkpoints on disk (all from before) stay."""
    loss = values["loss"]
    if not math.isfinite(loss) or values["params_finite"] < 1.0:
        what = f"loss ({loss})" if not math.isfinite(loss) else "parameters after the update"
        raise Stopped(
            f"non-finite {what} at step {step}; stopped. The last good checkpoint "
            f"is step {last_good} in {directory} (lower optim.lr or use optim.clip_mode, then "
            "rerun to resume from it).",
            exit_code=1,
        )


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
        try:
            return _train(config, workdir, is_main)
        except Stopped as err:
            log.warning("%s", err)
            raise


def _input(config: ml_collections.ConfigDict, source, per_device: int, layout: dict):
    """This process's batches from global step ``layout["start_step"]``."""
    return host_batches(
        source,
        batch_size_per_device=per_device,
        image_size=(config.data.image_size, config.data.image_size),
        seed=config.seed,
        start_step=layout["start_step"],
        workers=config.data.workers or None,
        prefetch=config.data.prefetch,
        worker_processes=config.data.worker_processes,
    )


def export_kwargs(config: ml_collections.ConfigDict, run: Run) -> dict[str, Any]:
    """How a run's teacher is written as an encoder file: everything from the config."""
    return dict(arch=config.model.arch, model_config=run.arch_kw, mean=run.augment.mean,
                std=run.augment.std, input_size=config.export_input_size or None,
                source=f"DINO teacher, cellssl_jax.train, data "
                f"{config.data.folder or config.data.tfds_name}")


def _tuples(tree: Any) -> Any:
    """JSON (the checkpoint's meta) gave lists where the config had tuples."""
    if isinstance(tree, dict):
        return {k: _tuples(v) for k, v in tree.items()}
    return tuple(tree) if isinstance(tree, list) else tree


def export_checkpoint(workdir: str | Path, step: int, path: str | Path) -> Path:
    """The teacher of checkpoint `step` of the run in `workdir`, written as the run writes its
    own encoder (config from the checkpoint), so a checkpoint chosen on validation ships with
    the same metadata as the run's last one would."""
    ckpt = Checkpointer(workdir, keep=1 << 30)  # reading only: nothing is deleted
    try:
        meta = ckpt.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        config = ml_collections.ConfigDict(_tuples(meta["meta"]["config"]))
        config.init_encoder = ""  # the state's structure is enough: restore sets the values
        run = build(config, num_examples=config.batch_size)
        state, _ = ckpt.restore(run.init_state(), step)
    finally:
        ckpt.close()
    return export_teacher(path, state, **export_kwargs(config, run))


def _train(config: ml_collections.ConfigDict, workdir: Path, is_main: bool) -> Path:
    """The run itself (logging already set up by ``train_and_evaluate``)."""
    source = make_source(config.data)
    n_global = jax.device_count()
    if config.batch_size % n_global:
        raise ConfigError(
            f"batch_size {config.batch_size} is not a multiple of the {n_global} devices"
        )
    per_device = config.batch_size // n_global
    run = build(config, len(source))
    total_steps = run.total_steps
    state = run.init_state()

    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
    meta: dict = {}
    if ckpt.latest_step() is not None:
        try:
            state, meta = ckpt.restore(state)
        except CheckpointMismatch as err:
            ckpt.close()
            raise ConfigError(str(err)) from None
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
        run.steps_per_epoch,
        total_steps,
    )

    aug = run.augment
    export_kw = export_kwargs(config, run)
    encoder_path = workdir / "encoder.msgpack"
    if start >= total_steps:  # finished: no step to compile, no loader to start
        log.info("nothing to do: checkpoint step %d >= total_steps %d; encoder %s", start,
                 total_steps, encoder_path)
        if is_main and not encoder_path.exists():
            export_teacher(encoder_path, state, **export_kw)
        ckpt.close()
        return encoder_path

    # The iterator's saved state is a position in this process's stream, which depends on the
    # process count and the per-process batch: with other counts, start the new layout's stream
    # at the restored step (the same images, unless some were skipped as unreadable).
    layout = {"process_count": jax.process_count(),
              "host_batch": per_device * jax.local_device_count(), "start_step": start}
    saved = meta.get("data")
    same = saved is not None and all(saved[k] == layout[k] for k in ("process_count",
                                                                     "host_batch"))
    if same and ckpt.has_data(start):
        layout = saved
        batches = _input(config, source, per_device, layout)
        ckpt.restore_data(start, batches)
    else:
        if start:
            log.warning("the checkpoint's input position is for %s, this run has %s: the input "
                        "restarts at global step %d of its order",
                        saved or "an older version", layout, start)
        batches = _input(config, source, per_device, layout)

    def save(host_state: TrainState, reason: str) -> None:
        ckpt.save(host_state, {"config": config.to_dict(), "step": int(host_state.step),
                               "data": layout}, data=batches)
        if is_main:
            export_teacher(encoder_path, host_state, **export_kw)
        log.info("checkpoint at step %d (%s); encoder -> %s", int(host_state.step), reason,
                 encoder_path)

    par = make_parallel(
        config.parallel,
        student=run.student,
        teacher=run.teacher,
        tx=run.tx,
        cfg=StepConfig(
            augment=aug,
            schedules=run.schedules,
            student_temp=config.dino.student_temp,
            center_momentum=config.dino.center_momentum,
        ),
    )
    rstate = par.put_state(state)
    del state
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
        batches.close()
    if schedule.stop_signal:
        raise Stopped(f"stopped by {schedule.stop_signal.name} at step {step}: checkpoint in "
                      f"{ckpt.directory}, encoder {encoder_path}; rerun the same command to "
                      "resume", schedule.exit_code)
    log.info("done: encoder %s, metrics %s", encoder_path, workdir / "metrics.jsonl")
    return encoder_path
