"""Images/s of the input path (decode + resize to uint8) on this CPU, for PBC and BM files.

    .venv/bin/python scripts/bench_input.py --data ../shared/data --out bench_input.json

Measures, per dataset: single-thread decode (read_rgb), single-thread decode+resize, and the
full `host_batches` pipeline (thread pool + prefetch) from the image folder and from a prepared
TFDS array_record split. Prints and writes one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from cellssl_jax.data import shared_data_dir
from cellssl_jax.data.images import read_rgb, scan_folder
from cellssl_jax.data.pipeline import FolderSource, host_batches, resize_rgb, tfds_source
from cellssl_jax.data.prepare import prepare

DATASETS = {"pbc": ("acevedo_pbc_dev", "acevedo"), "bm": ("matek_bm_dev", "matek_bm")}


def _rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def _pipeline_rate(source, n: int, size: int, batch: int, workers: int) -> float:
    steps = max(1, n // batch)
    it = host_batches(
        source,
        batch_size_per_device=batch,
        image_size=(size, size),
        seed=0,
        local_devices=1,
        process_index=0,
        process_count=1,
        workers=workers,
    )
    next(it)  # pool start-up and first batch are not steady state
    start = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps * batch / (time.perf_counter() - start)
    it.close()
    return rate


def bench(data: Path, n: int, size: int, batch: int, workers: int) -> dict:
    results: dict = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "image_size": size,
        "images_per_measure": n,
        "batch": batch,
        "workers": workers,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for key, (folder, builder) in DATASETS.items():
            root = data / folder
            paths = scan_folder(root).paths[:n]
            for p in paths:  # warm the page cache so disk is not what we time
                p.read_bytes()
            prepare(builder, root, Path(tmp))
            results[key] = {
                "files": folder,
                "decode_1thread": round(_rate(read_rgb, paths), 1),
                "decode_resize_1thread": round(
                    _rate(lambda p: resize_rgb(read_rgb(p), (size, size)), paths), 1
                ),
                "pipeline_folder": round(
                    _pipeline_rate(FolderSource(root), n, size, batch, workers), 1
                ),
                "pipeline_tfds": round(
                    _pipeline_rate(tfds_source(builder, "train", tmp), n, size, batch, workers), 1
                ),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=shared_data_dir(),
    )
    parser.add_argument("--n", type=int, default=1024, help="images per measurement")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    missing = [f for f, _ in DATASETS.values() if not (args.data / f).is_dir()]
    if missing:
        raise SystemExit(f"{args.data} lacks {missing}; pass --data <shared/data folder>")
    results = bench(args.data, args.n, args.image_size, args.batch, args.workers)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
