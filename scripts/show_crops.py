"""Write a PNG grid of DINO multi-crop views of real cells (rows: cells; columns: views).

    python scripts/show_crops.py --images ../shared/data/matek_bm_dev --out crops.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from cellssl_jax.data.images import read_rgb, scan_folder
from cellssl_jax.dino.augment import AugmentConfig, batch_multi_crop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", required=True, help="image folder (class sub-folders or flat)")
    ap.add_argument("--out", default="crops.png", help="output PNG")
    ap.add_argument("--n", type=int, default=6, help="number of cells (rows)")
    ap.add_argument("--size", type=int, default=224, help="global crop size")
    ap.add_argument("--local-size", type=int, default=96)
    ap.add_argument("--n-local", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        folder = scan_folder(args.images)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"show_crops: {e}") from None
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(folder.paths), size=min(args.n, len(folder.paths)), replace=False)
    imgs = [read_rgb(folder.paths[i]) for i in idx]
    h = min(im.shape[0] for im in imgs)
    w = min(im.shape[1] for im in imgs)
    batch = np.stack([im[:h, :w] for im in imgs])
    cfg = AugmentConfig(global_size=args.size, local_size=args.local_size, n_local=args.n_local)
    keys = jax.random.split(jax.random.key(args.seed), len(batch))
    glob, loc = jax.jit(lambda k, x: batch_multi_crop(k, x, cfg))(keys, jnp.asarray(batch))
    std, mean = np.array(cfg.std), np.array(cfg.mean)
    to_u8 = lambda a: np.clip((np.asarray(a) * std + mean) * 255, 0, 255).astype(np.uint8)  # noqa: E731
    b, s, pad = len(batch), args.size, 4
    cols = 3 + cfg.n_local
    canvas = np.full((b * (s + pad), cols * (s + pad), 3), 255, np.uint8)
    for r in range(b):
        y = r * (s + pad)
        orig = np.asarray(Image.fromarray(batch[r]).resize((s, s)))
        views = [orig, to_u8(glob[r]), to_u8(glob[b + r])]
        views += [to_u8(loc[v * b + r]) for v in range(cfg.n_local)]
        for c, v in enumerate(views):
            canvas[y : y + v.shape[0], c * (s + pad) : c * (s + pad) + v.shape[1]] = v
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(args.out)
    print(f"wrote {args.out}: {b} cells x (original, 2 global, {cfg.n_local} local views)")


if __name__ == "__main__":
    main()
