"""Images/s of the training input (decode + resize to uint8 batches) on this CPU: grain with
reader threads, grain with worker processes, and the pre-grain pipeline, on the same files.

    .venv/bin/python scripts/bench/bench_input.py --data ../shared/data --workers 2 \\
        [--old_ref 057e21c]
    # one folder (e.g. a pretraining run's cells), several counts, without git:
    python scripts/bench/bench_input.py --folder CELLS --image_size 128 --batch 256 \\
        --n 8192 --workers 8,16 --processes 8,12 --old_ref old_pipeline.py

Per dataset (PBC and BM dev folders, or `--folder` alone): single-thread decode+resize (the
per-core ceiling), then `host_batches` at each `--workers` thread count, at each `--processes`
count of worker processes (default: the thread counts), and the thread pool that
`data/pipeline.py` was before grain at each thread count, loaded from git (`git show
<old_ref>:...`, so no copy of it lives here) or from a file of that module (`--old_ref PATH`,
where there is no git; '' skips it). With one count per kind the figures are numbers, with
several {count: img/s}. The first batch (start-up) is not timed. Prints and writes one JSON
object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

from absl import flags

from cellssl_jax.data import shared_data_dir
from cellssl_jax.data.images import read_rgb, scan_folder
from cellssl_jax.data.pipeline import host_batches
from cellssl_jax.data.reading import FolderSource, resize_rgb

REPO = Path(__file__).resolve().parents[2]
DATASETS = {"pbc": "acevedo_pbc_dev", "bm": "matek_bm_dev"}
OLD_PIPELINE = "cellssl_jax/data/pipeline.py"


def old_pipeline(ref: str):
    """The module `data/pipeline.py` as it was at git `ref`, or in the file `ref` (its imports
    still resolve); None for ''."""
    if not ref:
        return None
    if Path(ref).is_file():
        text = Path(ref).read_text()
    else:
        text = subprocess.run(["git", "show", f"{ref}:{OLD_PIPELINE}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_pipeline.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rate(batches, steps: int, batch: int) -> float:
    next(batches)  # start-up (threads, processes) and the first batch are not steady state
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    rate = steps * batch / (time.perf_counter() - start)
    batches.close()
    return round(rate, 1)


def _rates(make, name: str, counts: list[int], steps: int, batch: int):
    """img/s of make(name=count): a number for one count, else {count: img/s}."""
    rates = {str(c): _rate(make(**{name: c}), steps, batch) for c in counts}
    return next(iter(rates.values())) if len(counts) == 1 else rates


def bench(data: Path, n: int, size: int, batch: int, workers: list[int], old,
          processes: list[int] | None = None, datasets: dict[str, str] | None = None) -> dict:
    processes = processes or workers
    results: dict = {"cpu": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "image_size": size,
                     "images_per_measure": n, "batch": batch,
                     "workers": workers[0] if len(workers) == 1 else workers,
                     "processes": processes[0] if len(processes) == 1 else processes}
    kw = dict(batch_size_per_device=batch, image_size=(size, size), seed=0, local_devices=1,
              process_index=0, process_count=1)
    steps = max(1, n // batch)
    for key, folder in (datasets or DATASETS).items():
        root = data / folder
        paths = scan_folder(root).paths[:n]
        for p in paths:  # warm the page cache so disk is not what we time
            p.read_bytes()
        start = time.perf_counter()
        for p in paths:
            resize_rgb(read_rgb(p), (size, size))
        source = FolderSource(root)
        results[key] = {
            "files": folder,
            "decode_resize_1thread": round(len(paths) / (time.perf_counter() - start), 1),
            "grain_threads": _rates(partial(host_batches, source, **kw), "workers", workers,
                                    steps, batch),
            "grain_processes": _rates(partial(host_batches, source, **kw), "worker_processes",
                                      processes, steps, batch),
        }
        if old is not None:
            results[key]["old_thread_pool"] = _rates(
                partial(old.host_batches, old.FolderSource(root), **kw), "workers", workers,
                steps, batch)
        print(json.dumps({key: results[key]}), flush=True)
    return results


def _counts(text: str) -> list[int]:
    """'8' or '8,16' -> [8] or [8, 16]."""
    return [int(c) for c in text.split(",") if c]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=shared_data_dir(),
    )
    parser.add_argument("--n", type=int, default=512, help="images per measurement")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--folder", type=Path, default=None,
                        help="measure this image folder alone (instead of --data's dev folders)")
    parser.add_argument("--workers", type=_counts, default=[os.cpu_count() or 1],
                        help="reader threads, one count or several: 8,16")
    parser.add_argument("--processes", type=_counts, default=None,
                        help="grain worker processes, one count or several (default: --workers)")
    parser.add_argument("--old_ref", default="057e21c",
                        help="git commit holding the pre-grain pipeline, or a file of that "
                        "module; '' to skip it")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    if args.folder is not None:
        data, datasets = args.folder.parent, {args.folder.name: args.folder.name}
    else:
        data, datasets = args.data, DATASETS
    missing = [f for f in datasets.values() if not (data / f).is_dir()]
    if missing:
        raise SystemExit(f"{data} lacks {missing}; pass --data <shared/data folder> or --folder")
    flags.FLAGS.mark_as_parsed()  # grain reads its options from absl flags (defaults here)
    results = bench(data, args.n, args.image_size, args.batch, args.workers,
                    old_pipeline(args.old_ref), args.processes, datasets)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
