"""Benchmark a lab job's start-up: time to the first prediction of `classify`, first run and
second run on new cells, with JAX's persistent compilation cache (cellssl_jax/cache.py).

From a labelled folder (default the PBC dev cells) three disjoint sets per repetition are drawn
(seeded), each `--labelled` cells spread over the classes plus `--unlabelled` cells of the same
folder, copied into a scratch folder. The runs of one repetition share one fresh features cache
root (so no run finds another's features: their cells differ) and run
`python -m cellssl_jax.classify` as a lab would:

1. the first run (nothing compiled yet: it traces and compiles the encoder and fills the
   compilation cache and the encoder's export cache);
2. the second run, on the second set (the encoder's function and executable come from them);
3. a control on the third set with $CELLSSL_COMPILATION_CACHE=0 (traces and compiles again).

`--same_labelled`: the second run and the control keep the first run's labelled cells and take
new folder cells only (a lab re-running after more cells were scanned).

`--reps N` repeats the three (a fresh cache root and fresh cells each time), so first, second
and control alternate; the report gives each run and the medians. Time to the first prediction:
from the job's start to predictions.csv being written. Each run's breakdown comes from its
classify.log timestamps, its files' mtimes and JAX's compile log ($JAX_LOG_COMPILES=1: a few
log lines); the machine's load average is recorded before and after each repetition (the CPU
may be shared).

    .venv/bin/python scripts/bench/bench_startup.py --reps 5 --out runs/bench_startup
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from cellssl_jax.cache import COMPILATION_ENV, COMPILATION_FOLDER, ENV, EXPORT_FOLDER
from cellssl_jax.data import shared_data_dir
from cellssl_jax.data.images import scan_folder


def draw_sets(folder: Path, labelled: int, unlabelled: int, sets: int, seed: int) -> list:
    """`sets` disjoint (labelled {class: paths}, unlabelled paths) draws from `folder`."""
    scan = scan_folder(folder)
    paths, labels = np.asarray(scan.paths), np.asarray(scan.labels)
    rng = np.random.default_rng(seed)
    by_class = [list(rng.permutation(np.flatnonzero(labels == c)))
                for c in range(len(scan.class_names))]
    per_class = -(-labelled // len(by_class))  # ceil
    out = []
    for _ in range(sets):
        lab = {scan.class_names[c]: [paths[i] for i in idx[:per_class]]
               for c, idx in enumerate(by_class)}
        for idx in by_class:
            del idx[:per_class]
        rest = [i for idx in by_class for i in idx]
        new = list(rng.choice(rest, unlabelled, replace=False))
        for idx in by_class:
            idx[:] = [i for i in idx if i not in set(new)]
        out.append((lab, [paths[i] for i in new]))
    return out


def materialise(root: Path, lab: dict, new: list) -> tuple[Path, Path]:
    for name, files in lab.items():
        (root / "labelled" / name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / "labelled" / name / Path(f).name)
    (root / "unlabelled").mkdir()
    for f in new:
        shutil.copy(f, root / "unlabelled" / Path(f).name)
    return root / "labelled", root / "unlabelled"


JAX_TIMES = {  # JAX's compile log ($JAX_LOG_COMPILES): seconds per jitted function
    "trace_s": re.compile(r"Finished tracing (\S+) for jit in ([\d.e-]+) sec"),
    "lower_s": re.compile(r"Finished jaxpr to MLIR module conversion jit\((\S+)\) in "
                          r"([\d.e-]+) sec"),
    "compile_s": re.compile(r"Finished XLA compilation of jit\((\S+)\) in ([\d.e-]+) sec"),
}


def log_time(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def breakdown(out: Path, start: float, stderr: str) -> dict:
    """Where one run's time went, in seconds from its start (classify.log, output mtimes)."""
    lines = (out / "classify.log").read_text().splitlines()

    def at(text: str, nth: int = 0) -> float:
        return [log_time(ln) for ln in lines if text in ln][nth]

    labelled_done = (out / "labelled_features.npz").stat().st_mtime
    marks = {  # each mark: when that part ended
        "python_imports_checks": at("compilation cache"),
        "encoder_load": at("INFO encoder "),
        # labelled cells all in the features cache: the encoder compiles for the folder's
        "read_labelled": min(at("compiling the encoder"), labelled_done),
        "encode_labelled_incl_compile": labelled_done,
        "read_encode_folder": (out / "unlabelled_features.npz").stat().st_mtime,
        "method_and_write": (out / "predictions.csv").stat().st_mtime,
    }
    parts, last = {}, start
    for name, t in marks.items():
        parts[name] = round(t - last, 2)
        last = t
    jax_times = {}
    for name, pattern in JAX_TIMES.items():
        found = pattern.findall(stderr)
        jax_times[name] = round(sum(float(s) for _, s in found), 3)
        jax_times[f"{name}_largest"] = max(((f, round(float(s), 3)) for f, s in found),
                                           key=lambda x: x[1], default=None)
    jax_times["compiles"] = len(JAX_TIMES["compile_s"].findall(stderr))
    jax_times["persistent_cache_hits"] = stderr.count("Persistent compilation cache hit")
    jax_times["export_cache"] = ("read" if "from the export cache" in stderr else
                                 "written" if "saved to the export cache" in stderr else "off")
    return {"parts_s": parts, "jax": jax_times}


def run_classify(cells: tuple[Path, Path], out: Path, env: dict, extra: list[str]) -> dict:
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "cellssl_jax.classify", "--labelled",
                           str(cells[0]), "--unlabelled", str(cells[1]), "--out", str(out),
                           *extra], env={**os.environ, "JAX_LOG_COMPILES": "1", **env},
                          capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"classify failed:\n{proc.stderr[-3000:]}")
    first = (out / "predictions.csv").stat().st_mtime - start
    return {"wall_s": round(wall, 2), "first_prediction_s": round(first, 2),
            **breakdown(out, start, proc.stderr)}


def median(values: list[float]) -> float:
    return round(float(np.median(values)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=shared_data_dir() / "acevedo_pbc_dev",
                        help="a labelled folder to draw cells from")
    parser.add_argument("--labelled", type=int, default=50, help="labelled cells per run")
    parser.add_argument("--unlabelled", type=int, default=100, help="new cells per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classify_args", default="",
                        help="more classify flags, e.g. '--encoder F.msgpack'")
    parser.add_argument("--reps", type=int, default=1,
                        help="repetitions of first / second / control (fresh cache each)")
    parser.add_argument("--same_labelled", action="store_true",
                        help="the second run and the control keep the first run's labelled "
                             "cells (a lab re-running on new folder cells: the labelled cells' "
                             "features come from the features cache)")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    args = parser.parse_args()
    if not args.images.is_dir():
        parser.error(f"no folder {args.images}")
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = ("first", "second", "control_no_compilation_cache")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        sets = draw_sets(args.images, args.labelled, args.unlabelled, 3 * args.reps, args.seed)
        if args.same_labelled:
            sets = [(sets[i - i % 3][0], new) for i, (_, new) in enumerate(sets)]
        cells = [materialise(scratch / f"set{i}", *s) for i, s in enumerate(sets)]
        extra = args.classify_args.split()
        report = {"images": str(args.images), "labelled": args.labelled,
                  "same_labelled": args.same_labelled,
                  "unlabelled": args.unlabelled, "classify_args": extra,
                  "nproc": os.cpu_count(), "reps": []}
        for rep in range(args.reps):
            cache = scratch / f"cache{rep}"
            runs = {"load_before": os.getloadavg()}
            for k, (name, env) in enumerate(zip(kinds, (
                    {ENV: str(cache)}, {ENV: str(cache)},
                    {ENV: str(cache), COMPILATION_ENV: "0"}), strict=True)):
                runs[name] = run_classify(cells[3 * rep + k], args.out / f"rep{rep}" / name,
                                          env, extra)
                print(rep, name, json.dumps(runs[name]), flush=True)
            runs.update(
                load_after=os.getloadavg(),
                compilation_cache_entries=len(list((cache / COMPILATION_FOLDER).glob("*"))),
                export_cache_entries=len(list((cache / EXPORT_FOLDER).glob("*"))),
                second_over_first=round(runs["second"]["first_prediction_s"]
                                        / runs["first"]["first_prediction_s"], 3))
            report["reps"].append(runs)
    reps = report["reps"]
    report["median"] = {
        name: {"first_prediction_s": median([r[name]["first_prediction_s"] for r in reps]),
               "parts_s": {part: median([r[name]["parts_s"][part] for r in reps])
                           for part in reps[0][name]["parts_s"]},
               **{k: median([r[name]["jax"][k] for r in reps])
                  for k in ("trace_s", "lower_s", "compile_s")}}
        for name in kinds}
    report["median"]["second_over_first"] = median([r["second_over_first"] for r in reps])
    report["load_range"] = [round(min(min(r["load_before"][0], r["load_after"][0]) for r in reps),
                                  2),
                            round(max(max(r["load_before"][0], r["load_after"][0]) for r in reps),
                                  2)]
    text = json.dumps(report, indent=1)
    (args.out / "startup.json").write_text(text + "\n")
    print(json.dumps(report["median"], indent=1))
    print("second / first (median of", len(reps), "):", report["median"]["second_over_first"],
          "load average (1 min) between", *report["load_range"])


if __name__ == "__main__":
    main()
