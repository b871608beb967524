"""Benchmark: jitted Flax XCiT inference vs timm PyTorch eager, same weights, inputs and threads.

Timed runs alternate between the two sides so that both see the same machine load (the CPU
may be shared). Prints and writes JSON: img/s (median wall time of the timed runs) per side
and their ratio, img per CPU-second (process time; steadier when the machine is shared), and
the max |diff| of the CLS features as a sanity check.

    .venv/bin/python scripts/bench/bench_extract.py --out bench_extract.json
"""

from __future__ import annotations

import os

THREADS = int(os.environ.get("BENCH_THREADS", "2"))
# Both sides get the same cores: XLA:CPU sizes its thread pool from the CPUs this process may
# use, torch gets set_num_threads(THREADS). Pin before jax/torch start their pools.
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:THREADS])
os.environ.setdefault("TIMM_FUSED_ATTN", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

from cellssl_jax.models.timm_mapping import timm_to_flax  # noqa: E402
from cellssl_jax.models.xcit import xcit  # noqa: E402


def bench_arch(arch: str, batch: int, size: int, runs: int, warmup: int) -> dict:
    torch.manual_seed(0)
    tmodel = timm.create_model(f"{arch}_224", pretrained=False, num_classes=0).eval()
    variables = timm_to_flax({k: v.numpy() for k, v in tmodel.state_dict().items()}, arch)
    variables = jax.device_put(variables)
    model = xcit(arch)
    forward = jax.jit(lambda v, x: model.apply(v, x)["cls"])

    images = np.random.default_rng(0).standard_normal((batch, size, size, 3), dtype=np.float32)
    x_jax = jax.device_put(images)
    x_torch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())

    def run_jax():
        return forward(variables, x_jax).block_until_ready()

    def run_torch():
        with torch.inference_mode():
            return tmodel.forward_features(x_torch)[:, 0]

    t0 = time.perf_counter()
    out_jax = np.asarray(run_jax())
    compile_s = time.perf_counter() - t0
    out_torch = run_torch().numpy()
    for _ in range(warmup):
        run_jax()
        run_torch()
    times = {"flax": [], "torch": []}
    cpu = {"flax": [], "torch": []}
    for _ in range(runs):
        for side, fn in (("torch", run_torch), ("flax", run_jax)):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times[side].append(time.perf_counter() - t0)
            cpu[side].append(time.process_time() - c0)
    ips = {side: batch / statistics.median(ts) for side, ts in times.items()}
    # CPU seconds of this process per run: less sensitive than wall time to other load
    ipc = {side: batch / statistics.median(ts) for side, ts in cpu.items()}
    result = {
        "arch": arch,
        "batch": batch,
        "image_size": size,
        "flax_img_per_s": round(ips["flax"], 2),
        "torch_img_per_s": round(ips["torch"], 2),
        "ratio_flax_over_torch": round(ips["flax"] / ips["torch"], 3),
        "flax_img_per_cpu_s": round(ipc["flax"], 2),
        "torch_img_per_cpu_s": round(ipc["torch"], 2),
        "cpu_ratio_flax_over_torch": round(ipc["flax"] / ipc["torch"], 3),
        "flax_run_s": [round(t, 3) for t in times["flax"]],
        "torch_run_s": [round(t, 3) for t in times["torch"]],
        "flax_first_call_s (compile + run)": round(compile_s, 2),
        "max_abs_diff_cls": float(np.abs(out_jax - out_torch).max()),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["xcit_tiny_12_p16", "xcit_small_12_p8"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per side (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs after the first call")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args()
    if args.runs < 1 or args.batch < 1:
        raise SystemExit("--runs and --batch must be >= 1")
    torch.set_num_threads(THREADS)
    report = {
        "threads": THREADS,
        "cpu": platform.processor() or platform.machine(),
        "cpus_used": sorted(os.sched_getaffinity(0)),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "results": [bench_arch(a, args.batch, args.size, args.runs, args.warmup)
                    for a in args.archs],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
