"""Benchmark the encoder's read on the CPU: today's path against the new one on the same cells
(`--compare read`), or jitted Flax XCiT against timm PyTorch eager (`--compare timm`).

`--compare read` (the lab read): the lab jobs' featurizer (`--features`, default the lab jobs'
default kind) over the same `--n` cells of `--images`, once per read in `--reads`, no features
cache: "whole" reads the whole image at the encoder file's input_size (the path before the crop
rule), "file" reads as the file asks (its crop rule), an integer S the whole image at S x S;
"@B" sets the batch size (default 32), a "KIND:" prefix another featurizer's kind (e.g.
"xcit+colorhist:file", the default before cell shape). Reads alternate round by round
(`--rounds`, after one untimed round that compiles), so each sees the same load; prints cells/s
(median wall time of a round, reading included) and cells per CPU-second of each, and each
read's ratio to the first.
The machine's `nproc` and load average are recorded before and after.

`--compare timm`: timed runs alternate between the two sides so that both see the same machine
load (the CPU may be shared). Prints and writes JSON: img/s (median wall time of the timed runs)
per side and their ratio, img per CPU-second (process time; steadier when the machine is
shared), and the max |diff| of the CLS features as a sanity check.

    .venv/bin/python scripts/bench/bench_extract.py --compare read \\
        --images ../shared/data/acevedo_pbc_dev --out F.json
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

from cellssl_jax.feature_kinds import DEFAULT_KIND  # noqa: E402
from cellssl_jax.models.timm_mapping import timm_to_flax  # noqa: E402
from cellssl_jax.models.xcit import xcit  # noqa: E402


def machine() -> dict:
    """CPUs and load average now (the machine may be shared: say so beside every figure)."""
    return {"nproc": os.cpu_count(), "cpus_used": sorted(os.sched_getaffinity(0)),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


class Cells:
    """`n` cells of a folder source, drawn once (seeded): every read gets the same ones."""

    def __init__(self, source, n: int, seed: int = 0):
        self.source = source
        pick = np.random.default_rng(seed).permutation(len(source))[:n]
        self.indices = np.sort(pick)
        self.class_names = source.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.source[int(self.indices[i])]


def bench_read(args) -> dict:
    """Today's read and the new one(s), alternating on the same cells."""
    from cellssl_jax.data.reading import FolderSource
    from cellssl_jax.encoder import load_encoder
    from cellssl_jax.featurize import featurize, make_featurizer

    encoder = load_encoder(args.encoder)
    cells = Cells(FolderSource(args.images), args.n)
    reads = {}
    for spec in args.reads.split(","):
        kind, _, read = spec.rpartition(":")
        size, _, batch = read.partition("@")
        image_size = {"file": None, "whole": encoder.input_size}.get(size)
        if image_size is None and size != "file":
            image_size = int(size)
        reads[spec] = make_featurizer(kind or args.features, encoder, int(batch or 32), image_size)
    before = machine()
    first, wall, cpu = {}, {k: [] for k in reads}, {k: [] for k in reads}
    for r in range(args.rounds + 1):
        for spec, featurizer in reads.items():
            t0, c0 = time.perf_counter(), time.process_time()
            featurize(cells, args.images, featurizer, workers=args.workers)
            seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
            if r == 0:
                first[spec] = round(seconds, 2)  # compiles the encoder for the read's shape
            else:
                wall[spec].append(seconds)
                cpu[spec].append(cpu_s)
            print(f"round {r} {spec}: {len(cells) / seconds:.2f} cells/s", flush=True)
    base = next(iter(reads))
    ips = {k: len(cells) / statistics.median(v) for k, v in wall.items()}
    ipc = {k: len(cells) / statistics.median(v) for k, v in cpu.items()}
    return {
        "compare": "read", "images": args.images, "cells": len(cells),
        "features": args.features, "encoder": str(encoder.path), "encoder_sha256": encoder.sha256,
        "rounds": args.rounds, "threads": THREADS, "workers": args.workers,
        "machine_before": before, "machine_after": machine(),
        "reads": {k: {"read_size": f.read.name if f.read else None, "batch": f.batch_size,
                      "cells_per_s": round(ips[k], 2),
                      f"ratio_to_{base}": round(ips[k] / ips[base], 3),
                      "cells_per_cpu_s": round(ipc[k], 2),
                      f"cpu_ratio_to_{base}": round(ipc[k] / ipc[base], 3),
                      "round_s": [round(t, 2) for t in wall[k]],
                      "first_round_s (compile + read)": first[k]}
                  for k, f in reads.items()},
    }


def bench_arch(arch: str, batch: int, size: int, runs: int, warmup: int) -> dict:
    import timm
    import torch

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
    parser.add_argument("--compare", choices=("timm", "read"), default="timm")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    read = parser.add_argument_group("--compare read")
    read.add_argument("--images", help="a folder of cells (e.g. the shared PBC dev cells)")
    read.add_argument("--encoder", help="an encoder file (default: the bundled one)")
    read.add_argument("--features", default=DEFAULT_KIND, help="the featurizer's kind")
    read.add_argument("--reads", default="whole,file",
                      help="reads to compare, the first the reference: whole | file | S, each "
                      "with an optional @BATCH and KIND: prefix (default whole,file)")
    read.add_argument("--n", type=int, default=256, help="cells read per round")
    read.add_argument("--rounds", type=int, default=3, help="timed rounds per read (median)")
    read.add_argument("--workers", type=int, default=2, help="reader threads")
    timm_ = parser.add_argument_group("--compare timm")
    timm_.add_argument("--archs", nargs="+", default=["xcit_tiny_12_p16", "xcit_small_12_p8"])
    timm_.add_argument("--batch", type=int, default=32)
    timm_.add_argument("--size", type=int, default=224)
    timm_.add_argument("--runs", type=int, default=5, help="timed runs per side (median)")
    timm_.add_argument("--warmup", type=int, default=1, help="untimed runs after the first call")
    args = parser.parse_args()
    if args.compare == "read":
        if not args.images:
            parser.error("--compare read needs --images")
        if args.n < 1 or args.rounds < 1:
            parser.error("--n and --rounds must be >= 1")
        report = bench_read(args)
    else:
        if args.runs < 1 or args.batch < 1:
            parser.error("--runs and --batch must be >= 1")
        import timm
        import torch

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
