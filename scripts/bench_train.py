"""Throughput of the DINO train step (augmentation + student/teacher + update) for a preset.

    python scripts/bench_train.py --config configs/cpu_tiny.py [--steps 10] [--config.x=y ...]

Runs the pmapped step on synthetic uint8 images at the config's pipeline size over all local
devices and prints compile time, img/s, and (from XLA's cost analysis) FLOP/img and the
achieved FLOP/s; on a GPU pass --peak_tflops to get MFU. Data loading is not included.
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import app, flags

from cellssl_jax.dino.step import StepConfig, pmapped_step, replicate
from cellssl_jax.train import (
    augment_config,
    backbone_config,
    build_models,
    init_state,
    make_schedules,
    make_tx,
    parse_flags,
)

# --config comes with cellssl_jax.train (same preset files and overrides).
flags.DEFINE_integer("steps", 10, "timed steps (after one compile/warm-up step)")
flags.DEFINE_float("peak_tflops", 0.0, "accelerator peak TFLOP/s for MFU (0: not reported)")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    config = FLAGS.config
    if config is None:
        raise app.UsageError("--config is required")
    n_dev = jax.local_device_count()
    if config.batch_size % n_dev:
        raise SystemExit(f"batch_size {config.batch_size} is not a multiple of {n_dev} devices")
    student, teacher = build_models(config, backbone_config(config))
    sched = make_schedules(config, steps_per_epoch=100, total_steps=1000)
    aug = augment_config(config)
    tx = make_tx(config, sched)
    state = init_state(config, student, tx)
    step = pmapped_step(student=student, teacher=teacher, tx=tx,
                        cfg=StepConfig(augment=aug, schedules=sched))
    size = config.data.image_size
    per_dev = config.batch_size // n_dev
    images = np.random.default_rng(0).integers(0, 256, (n_dev, per_dev, size, size, 3), np.uint8)
    rstate = replicate(state)

    lowered = step.lower(rstate, images)
    t0 = time.time()
    compiled = lowered.compile()
    compile_s = time.time() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    rstate, m = step(rstate, images)
    jax.block_until_ready(m)
    t0 = time.time()
    for _ in range(FLAGS.steps):
        rstate, m = step(rstate, images)
    jax.block_until_ready(m)
    dt = (time.time() - t0) / FLAGS.steps
    ips = config.batch_size / dt
    crops = f"2x{aug.global_size}+{aug.n_local}x{aug.local_size}"
    print(f"device: {jax.devices()[0].device_kind} x{n_dev}; {config.model.arch} "
          f"(dim {student.backbone.embed_dim}, depth {student.backbone.depth}), head "
          f"{config.head.out_dim}, crops {crops} from {size}px, global batch {config.batch_size}, "
          f"dtype {config.model.dtype}")
    print(f"compile {compile_s:.1f} s; step {dt * 1e3:.1f} ms; {ips:.1f} img/s")
    if flops:
        per_img = flops / per_dev  # cost analysis is per device program
        tflops = per_img * ips / 1e12
        line = f"XLA cost analysis: {per_img / 1e9:.2f} GFLOP/img, {tflops:.3f} TFLOP/s"
        if FLAGS.peak_tflops:
            line += f", MFU {tflops / FLAGS.peak_tflops:.1%}"
        print(line)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
