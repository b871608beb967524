"""Throughput of the DINO train step (augmentation + student/teacher + update) for a preset.

    python scripts/bench/bench_train.py --config cpu_tiny [--steps 10] [--config.x=y ...]

Runs the step on synthetic uint8 images at the config's pipeline size over all local devices
and prints compile time, img/s, the analytic FLOP per image (cellssl_jax/models/flops.py: the
matmuls and convolutions of student forward + backward on all crops and teacher forward on the
global ones) and the achieved FLOP/s; pass the accelerator's peak (--peak_tflops, e.g. 989 for
an H200's dense bf16) to get MFU. XLA's cost-analysis figure is printed beside it only as a
cross-check (on GPU it misses what runs in fused and library kernels). Data loading is not
included. --json appends the figures (and peak device memory where the backend reports it) as
one line to a file; --profile writes a jax.profiler trace of 3 steps after the timed ones and
prints its --top_ops ops by time. The multi-crop augmentation, which runs inside our step (DINO
and the PyTorch side of the comparison run it on the CPU), is also timed alone on the same
batch, so the model's part of the step and its MFU can be read apart from it.
"""

from __future__ import annotations

import collections
import gzip
import json
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from cellssl_jax.dino.augment import batch_multi_crop
from cellssl_jax.dino.step import StepConfig, make_parallel
from cellssl_jax.models.flops import dino_sample_flops
from cellssl_jax.train import parse_flags
from cellssl_jax.trainer import build

# --config comes with cellssl_jax.train (same presets and overrides).
flags.DEFINE_integer("steps", 10, "timed steps (after one compile/warm-up step)")
flags.DEFINE_float("peak_tflops", 0.0, "accelerator peak TFLOP/s for MFU (0: not reported)")
flags.DEFINE_string("json", "", "append the figures as one JSON line to this file")
flags.DEFINE_string("profile", "", "write a jax.profiler trace of 3 more steps to this folder")
flags.DEFINE_integer("top_ops", 5, "how many of the profile's ops to print")
flags.DEFINE_integer("num_examples", 0,
                     "images per epoch for the schedules (0: 100 steps an epoch); a run's own "
                     "count and --config.total_steps give the step that run compiles (shared "
                     "through a persistent compilation cache)")
FLAGS = flags.FLAGS


def top_ops(folder: str, n: int = 5) -> list[tuple[str, float]]:
    """The n ops with the most total time in a jax.profiler trace: device kernels where the
    trace has a device (GPU/TPU), else the host's XLA ops (Python frames and the executor's own
    spans left out). -> [(name, milliseconds)]."""
    path = sorted(Path(folder).rglob("*.trace.json.gz"))[-1]
    events = json.loads(gzip.open(path).read())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    device = {pid for pid, name in names.items() if "/device:" in name}
    total: collections.Counter = collections.Counter()
    for e in events:
        if e.get("ph") != "X" or (device and e["pid"] not in device):
            continue
        if not device and (e["name"].startswith("$") or "Thunk" in e["name"]):
            continue
        total[e["name"]] += e.get("dur", 0) / 1e3
    return total.most_common(n)


def augment_ms(aug, images, steps: int) -> float:
    """Milliseconds of the multi-crop augmentation alone on one device's batch (jitted as the
    step runs it: one key per sample)."""
    fn = jax.jit(lambda key, x: batch_multi_crop(
        jax.random.split(key, x.shape[0]), x, aug))
    jax.block_until_ready(fn(jax.random.key(0), images))
    t0 = time.time()
    for i in range(steps):
        out = fn(jax.random.key(i), images)
    jax.block_until_ready(out)
    return (time.time() - t0) / steps * 1e3


def main(argv: list[str]) -> None:
    del argv
    config = FLAGS.config
    if config is None:
        raise app.UsageError("--config is required")
    n_dev = jax.local_device_count()
    if config.batch_size % n_dev:
        raise SystemExit(f"batch_size {config.batch_size} is not a multiple of {n_dev} devices")
    run = build(config, num_examples=FLAGS.num_examples or 100 * config.batch_size)
    arch_kw, student, aug = run.arch_kw, run.student, run.augment
    state = run.init_state()
    par = make_parallel(config.parallel, student=student, teacher=run.teacher, tx=run.tx,
                        cfg=StepConfig(augment=aug, schedules=run.schedules,
                                       student_temp=config.dino.student_temp,
                                       center_momentum=config.dino.center_momentum))
    size = config.data.image_size
    per_dev = config.batch_size // n_dev
    images = np.random.default_rng(0).integers(0, 256, (n_dev, per_dev, size, size, 3), np.uint8)
    images = par.put_batch(images)
    rstate = par.put_state(state)
    step = par.step

    lowered = step.lower(rstate, images)
    t0 = time.time()
    compiled = lowered.compile()
    compile_s = time.time() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0
    rstate, m = step(rstate, images)
    jax.block_until_ready(m)
    t0 = time.time()
    for _ in range(FLAGS.steps):
        rstate, m = step(rstate, images)
    jax.block_until_ready(m)
    dt = (time.time() - t0) / FLAGS.steps
    ips = config.batch_size / dt
    aug_ms = augment_ms(aug, images[0], FLAGS.steps)
    crops = f"2x{aug.global_size}+{aug.n_local}x{aug.local_size}"
    print(f"device: {jax.devices()[0].device_kind} x{n_dev}; {config.model.arch} "
          f"(dim {student.backbone.embed_dim}, depth {student.backbone.depth}), head "
          f"{config.head.out_dim}, crops {crops} from {size}px, global batch {config.batch_size}, "
          f"dtype {config.model.dtype}, {config.parallel}")
    print(f"compile {compile_s:.1f} s; step {dt * 1e3:.1f} ms; {ips:.1f} img/s; the "
          f"augmentation alone (one device's batch) {aug_ms:.1f} ms")
    h = config.head
    per_img = dino_sample_flops(
        arch_kw,
        dict(out_dim=h.out_dim, hidden_dim=h.hidden_dim, bottleneck_dim=h.bottleneck_dim,
             nlayers=h.nlayers),
        global_size=aug.global_size, local_size=aug.local_size, n_local=aug.n_local,
    )
    tflops = per_img * ips / 1e12
    line = f"analytic: {per_img / 1e9:.2f} GFLOP/img, {tflops:.3f} TFLOP/s"
    model_tflops = per_img * config.batch_size / n_dev / max(dt - aug_ms / 1e3, 1e-9) / 1e12
    if FLAGS.peak_tflops:
        line += (f", MFU {tflops / FLAGS.peak_tflops:.1%} of {FLAGS.peak_tflops:g} TFLOP/s "
                 f"({model_tflops / FLAGS.peak_tflops:.1%} of the step less the augmentation)")
    print(line)
    if xla_flops:  # cost analysis is per device program
        print(f"cross-check, XLA cost analysis: {xla_flops / per_dev / 1e9:.2f} GFLOP/img")
    stats = jax.devices()[0].memory_stats() or {}  # None on the CPU backend
    peak_gib = stats.get("peak_bytes_in_use", 0) / 2**30
    if peak_gib:
        print(f"peak device memory {peak_gib:.1f} GiB")
    ops = None
    if FLAGS.profile:
        with jax.profiler.trace(FLAGS.profile):
            for _ in range(3):
                rstate, m = step(rstate, images)
            jax.block_until_ready(m)
        try:  # the timed figures above must reach --json even if the trace cannot be read
            ops = top_ops(FLAGS.profile, FLAGS.top_ops)
            print(f"profile -> {FLAGS.profile}; top ops by time over 3 steps: "
                  + "; ".join(f"{name} {ms:.1f} ms" for name, ms in ops))
        except (IndexError, OSError, ValueError, KeyError) as err:
            print(f"profile -> {FLAGS.profile}; its trace could not be read: {err!r}")
    if FLAGS.json:
        record = dict(device=jax.devices()[0].device_kind, devices=n_dev, jax=jax.__version__,
                      arch=config.model.arch, batch=config.batch_size, dtype=config.model.dtype,
                      parallel=config.parallel, crops=crops, compile_s=compile_s,
                      step_ms=dt * 1e3, augment_ms=aug_ms, img_per_s=ips,
                      gflop_per_img=per_img / 1e9,
                      mfu=tflops / FLAGS.peak_tflops if FLAGS.peak_tflops else None,
                      mfu_less_augment=(model_tflops / FLAGS.peak_tflops
                                        if FLAGS.peak_tflops else None),
                      xla_gflop_per_img=xla_flops / per_dev / 1e9 if xla_flops else None,
                      peak_gib=peak_gib or None,
                      top_ops=ops)
        with open(FLAGS.json, "a") as fh:
            fh.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
