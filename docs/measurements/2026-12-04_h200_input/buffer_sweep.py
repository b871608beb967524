"""The threaded reader (`host_batches`) at set read-ahead buffers, on one folder at batch 256:

1. img/s of back-to-back batches (as bench_input.py: the first batch not timed);
2. the consumer's time in next() per batch when a simulated device step (a sleep) let the readers
   fill the buffer first: what the training loop's thread pays per step for its batch.

The buffer (grain's `prefetch_buffer_size`, images) is forced through grain.ReadOptions, so the
figures hold for the pipeline before e51a65a (buffer = prefetch x host_batch: 1024 images for
bundled_h200) and after (prefetch x workers: 64).

    python docs/measurements/2026-12-04_h200_input/buffer_sweep.py CELLS [--threads 16] \\
        [--buffers 1024,512,128,64,32] [--image_size 128] [--batch 256] [--step_s 0.3]
"""

from __future__ import annotations

import argparse
import json
import time

import grain
from absl import flags

from cellssl_jax.data import pipeline
from cellssl_jax.data.reading import FolderSource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--buffers", default="1024,512,128,64,32")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--step_s", type=float, default=0.3)
    args = parser.parse_args()
    flags.FLAGS.mark_as_parsed()  # grain reads its options from absl flags (defaults here)
    source = FolderSource(args.folder)
    real = grain.ReadOptions
    kw = dict(batch_size_per_device=args.batch, image_size=(args.image_size,) * 2, seed=0,
              local_devices=1, process_index=0, process_count=1, workers=args.threads)
    for buffer in [int(b) for b in args.buffers.split(",")]:
        pipeline.grain.ReadOptions = lambda num_threads, prefetch_buffer_size, b=buffer: real(
            num_threads=num_threads, prefetch_buffer_size=b)
        it = pipeline.host_batches(source, **kw)
        next(it)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        rate = args.batches * args.batch / (time.perf_counter() - start)
        waits = []
        for _ in range(args.batches):
            time.sleep(args.step_s)
            start = time.perf_counter()
            next(it)
            waits.append(time.perf_counter() - start)
        it.close()
        waits.sort()
        print(json.dumps(dict(threads=args.threads, buffer=buffer, batch=args.batch,
                              img_per_s=round(rate, 1),
                              next_ms_after_step_median=round(waits[len(waits) // 2] * 1e3, 1),
                              next_ms_after_step_min=round(waits[0] * 1e3, 1))), flush=True)
    pipeline.grain.ReadOptions = real


if __name__ == "__main__":
    main()
