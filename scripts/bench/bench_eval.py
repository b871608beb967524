"""Benchmark: feature extraction (img/s) and the full few-shot protocol (wall time) on real cells.

  .venv/bin/python scripts/bench/bench_eval.py --images ../shared/data/acevedo_pbc_dev \\
      --out bench_out

Steps (each one a real CLI run, timed): (1) `extract` with an encoder (--encoder, or a
random-init XCiT of --arch saved to the output folder; the bundled encoder is not used by
default); (2) `evaluate fewshot --split 0.7` with the default protocol (8 sizes x --repeats x
svm,lr,knn); (3) the colour-histogram baseline: `extract --features colorhist`, then SVM
(paper-code) at 50 cells/class, 70/30, 20 repetitions. Figures go to <out>/bench.json, with
the machine's load average (the CPU may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from cellssl_jax import evaluate, extract
from cellssl_jax.data import shared_data_dir
from cellssl_jax.encoder import random_init_encoder
from cellssl_jax.models.pixels import PAPER_MEAN, PAPER_STD
from cellssl_jax.models.xcit import XCIT_VARIANTS


def _timed(label: str, fn, argv: list[str], log: list[dict]) -> dict:
    cmd = " ".join(argv)
    print(f"== {label}: {cmd}", flush=True)
    start = time.perf_counter()
    result = fn(argv)
    seconds = time.perf_counter() - start
    entry = {"step": label, "argv": cmd, "wall_s": round(seconds, 1), "load_avg": os.getloadavg()}
    if isinstance(result, dict):
        entry.update({k: v for k, v in result.items() if k != "shapes"})
    log.append(entry)
    print(f"== {label}: {seconds:.1f} s", flush=True)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", default=str(shared_data_dir() / "acevedo_pbc_dev"))
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--encoder", type=Path, default=None, help="encoder file")
    parser.add_argument("--arch", default="xcit_nano_12_p16", help="random-init arch if no file")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--image_size", type=int, default=None, help="default: native, bucketed")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", default="", help="comma list of steps to skip: xcit,colorhist")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    skip = set(args.skip.split(","))
    log: list[dict] = []
    jobs = ["--jobs", str(args.jobs)]

    if "xcit" not in skip:
        ckpt = args.encoder or random_init_encoder(
            args.out / f"{args.arch}_random.msgpack", args.arch, XCIT_VARIANTS[args.arch],
            mean=PAPER_MEAN, std=PAPER_STD,
        )
        feats = args.out / "features_xcit" / "features.npz"
        _timed(
            "extract_xcit",
            extract.main,
            ["--images", args.images, "--encoder", str(ckpt), "--out", str(feats.parent)]
            + ["--batch_size", str(args.batch_size)]
            + (["--image_size", str(args.image_size)] if args.image_size else []),
            log,
        )
        _timed(
            "fewshot_full_protocol",
            evaluate.main,
            ["fewshot", "--train", str(feats), "--split", "0.7", "--repeats", str(args.repeats)]
            + ["--out", str(args.out / "fewshot_xcit")]
            + jobs,
            log,
        )
    if "colorhist" not in skip:
        hist = args.out / "features_colorhist" / "features.npz"
        _timed(
            "extract_colorhist",
            extract.main,
            ["--images", args.images, "--features", "colorhist", "--out", str(hist.parent)],
            log,
        )
        _timed(
            "colorhist_svm_n50",
            evaluate.main,
            ["fewshot", "--train", str(hist), "--split", "0.7", "--n", "50", "--repeats", "20"]
            + ["--classifiers", "svm", "--out", str(args.out / "fewshot_colorhist")]
            + jobs,
            log,
        )
        summary = json.loads((args.out / "fewshot_colorhist" / "summary.json").read_text())[0]
        log[-1]["balanced_accuracy_mean"] = summary["balanced_accuracy_mean"]
        log[-1]["balanced_accuracy_std"] = summary["balanced_accuracy_std"]
    report = {"machine": platform.platform(), "cpus": os.cpu_count(), "steps": log}
    (args.out / "bench.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
