"""Benchmark a lab job's start-up: time to the first prediction of `classify`, first run and
second run on new cells, with JAX's persistent compilation cache (cellssl_jax/cache.py).

From a labelled folder (default the PBC dev cells) three disjoint sets are drawn (seeded), each
`--labelled` cells spread over the classes plus `--unlabelled` cells of the same folder, copied
into a scratch folder. All runs share one fresh features cache root (so no run finds another's
features: their cells differ) and run `python -m cellssl_jax.classify` as a lab would:

1. the first run (nothing compiled yet: it compiles and fills the compilation cache);
2. the second run, on the second set (the compiled encoder comes from the cache);
3. a control on the third set with $CELLSSL_COMPILATION_CACHE=0 (compiles again).

Time to the first prediction: from the job's start to predictions.csv being written. The
machine's load average is recorded before and after (the CPU may be shared).

    .venv/bin/python scripts/bench/bench_startup.py --out runs/bench_startup
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cellssl_jax.cache import COMPILATION_ENV, COMPILATION_FOLDER, ENV
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


def run_classify(cells: tuple[Path, Path], out: Path, env: dict, extra: list[str]) -> dict:
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "cellssl_jax.classify", "--labelled",
                           str(cells[0]), "--unlabelled", str(cells[1]), "--out", str(out),
                           *extra], env={**os.environ, **env}, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"classify failed:\n{proc.stderr[-3000:]}")
    first = (out / "predictions.csv").stat().st_mtime - start
    return {"wall_s": round(wall, 2), "first_prediction_s": round(first, 2),
            "log_tail": proc.stderr.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=shared_data_dir() / "acevedo_pbc_dev",
                        help="a labelled folder to draw cells from")
    parser.add_argument("--labelled", type=int, default=50, help="labelled cells per run")
    parser.add_argument("--unlabelled", type=int, default=100, help="new cells per run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classify_args", default="",
                        help="more classify flags, e.g. '--encoder F.msgpack'")
    parser.add_argument("--out", type=Path, required=True, help="report folder")
    args = parser.parse_args()
    if not args.images.is_dir():
        parser.error(f"no folder {args.images}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        cache = scratch / "cache"
        sets = draw_sets(args.images, args.labelled, args.unlabelled, 3, args.seed)
        cells = [materialise(scratch / f"set{i}", *s) for i, s in enumerate(sets)]
        extra = args.classify_args.split()
        report = {"images": str(args.images), "labelled": args.labelled,
                  "unlabelled": args.unlabelled, "classify_args": extra,
                  "nproc": os.cpu_count(), "load_before": os.getloadavg()}
        runs = {}
        for name, i, env in (("first", 0, {ENV: str(cache)}),
                             ("second", 1, {ENV: str(cache)}),
                             ("control_no_compilation_cache", 2,
                              {ENV: str(cache), COMPILATION_ENV: "0"})):
            runs[name] = run_classify(cells[i], args.out / name, env, extra)
            print(name, json.dumps(runs[name]), flush=True)
        entries = list((cache / COMPILATION_FOLDER).glob("*"))
        report.update(runs=runs, load_after=os.getloadavg(),
                      compilation_cache_entries=len(entries),
                      second_over_first=round(runs["second"]["first_prediction_s"]
                                              / runs["first"]["first_prediction_s"], 3))
    text = json.dumps(report, indent=1)
    (args.out / "startup.json").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
