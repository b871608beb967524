"""Explainability figures: class-attention maps of one cell (paper Fig. 5) and a 2-D embedding of
a features file coloured by class (paper Fig. 6).

    python -m cellssl_jax.visualize attention --image CELL.jpg [--checkpoint F] --out att.png
    python -m cellssl_jax.visualize embedding --features F.npz --out embedding.png
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a lab server or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cellssl_jax.data.images import UnreadableImage, read_rgb  # noqa: E402
from cellssl_jax.extract import Extractor  # noqa: E402
from cellssl_jax.logs import log_to_console  # noqa: E402

log = logging.getLogger("cellssl_jax.visualize")

THRESHOLD = 0.8  # the paper's Fig. 5: heads thresholded at 80 % of their maximum


def upsample(maps: np.ndarray, shape: tuple[int, int], patch: int) -> np.ndarray:
    """[heads, Hp, Wp] patch maps -> [heads, H, W], each patch a `patch`-pixel block.

    A side that is not a multiple of the patch leaves the last row/column of patches partly
    outside the image (XCiT pads), so those blocks are cut at the image's edge."""
    if maps.shape[1:] != (-(-shape[0] // patch), -(-shape[1] // patch)):
        raise ValueError(f"{maps.shape[1:]} patch maps do not cover {shape} with patch {patch}")
    return np.kron(maps, np.ones((1, patch, patch), maps.dtype))[:, : shape[0], : shape[1]]


def attention_figure(
    image: np.ndarray,
    attention: np.ndarray,
    patch: int,
    out: Path,
    threshold: float = THRESHOLD,
    title: str = "",
) -> Path:
    """Fig. 5 layout: the cell, then one column per head; top row the continuous map over the
    cell, bottom row the region where the head's attention is >= `threshold` x its maximum."""
    heads = attention.shape[0]
    maps = upsample(attention, image.shape[:2], patch)
    fig, axes = plt.subplots(2, heads + 1, figsize=(1.9 * (heads + 1), 4.1), squeeze=False)
    for row, label in enumerate(("continuous", f">= {threshold:.0%} of max")):
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(label, fontsize=8)
    axes[0, 0].set_title("cell", fontsize=8)
    for h in range(heads):
        m = maps[h]
        axes[0, h + 1].imshow(image)
        axes[0, h + 1].imshow(m, cmap="inferno", alpha=0.65)
        axes[0, h + 1].set_title(f"head {h}", fontsize=8)
        keep = m >= threshold * m.max()
        shown = np.where(keep[..., None], image, (image * 0.4).astype(np.uint8))
        axes[1, h + 1].imshow(shown)
        axes[1, h + 1].contour(keep, levels=[0.5], colors="yellow", linewidths=1.2)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def attention_png(
    image_path: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    size: int | None = None,
    threshold: float = THRESHOLD,
    encoder=None,
) -> Path:
    """Class-attention maps of the encoder's last class-attention block for one cell image."""
    from cellssl_jax.encoder import load_encoder

    enc = encoder if encoder is not None else load_encoder(checkpoint)
    cell = Extractor("xcit", enc, image_size=size).resize(read_rgb(image_path))  # as extract
    att = enc.forward(cell[None])["cls_attention"][0]
    title = f"{Path(image_path).name} - {enc.name} ({enc.arch}), last class-attention block"
    return attention_figure(cell, att, enc.model.patch_size, Path(out), threshold, title)


def embed_2d(features: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of the rows: UMAP when installed (as the paper), else t-SNE, both after
    standardising and a PCA to <= 50 dimensions (the usual denoising step)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.asarray(features, np.float64))
    x = PCA(min(50, *x.shape), random_state=seed).fit_transform(x)
    try:
        import umap

        return umap.UMAP(random_state=seed).fit_transform(x), "UMAP"
    except ImportError:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3.0)))
        method = "exact" if len(x) <= 1000 else "barnes_hut"  # exact is faster when small
        tsne = TSNE(2, perplexity=perplexity, init="pca", method=method, random_state=seed)
        return tsne.fit_transform(x), "t-SNE"


def embedding_png(features_path: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Scatter plot of a features file's 2-D embedding, coloured by class (grey: unlabelled)."""
    from cellssl_jax.fewshot.features import load_features

    feats = load_features(features_path)
    if len(feats.features) < 5:
        raise ValueError(f"{features_path}: {len(feats.features)} cells; an embedding needs >= 5")
    xy, method = embed_2d(feats.features, seed)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    unl = feats.labels < 0
    dot = 20 if len(xy) < 1000 else 6  # visible dots for a sample, no blobs for a dataset
    if unl.any():
        ax.scatter(*xy[unl].T, s=dot, c="lightgrey", label="unlabelled", linewidths=0)
    cmap = plt.get_cmap("tab10" if len(feats.class_names) <= 10 else "tab20")
    for k, name in enumerate(feats.class_names):
        sel = feats.labels == k
        ax.scatter(
            *xy[sel].T, s=dot, color=cmap(k % cmap.N), label=f"{name} ({sel.sum()})", linewidths=0
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{method} of {len(xy)} cells - {feats.encoder or 'features'}", fontsize=10)
    ax.legend(fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m cellssl_jax.visualize",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="figure", required=True)
    att = sub.add_parser("attention", help="per-head class-attention maps of one cell")
    att.add_argument("--image", required=True, help="a cell image file")
    att.add_argument("--checkpoint", help="encoder file (default: the bundled encoder)")
    att.add_argument("--out", required=True, help="output PNG")
    att.add_argument(
        "--size",
        type=int,
        default=None,
        help="model input side, any S >= 1 (default: the encoder's input_size, "
        "else native, as extract)",
    )
    att.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="fraction of each head's maximum kept in the bottom row",
    )
    emb = sub.add_parser("embedding", help="2-D embedding of a features file, by class")
    emb.add_argument("--features", required=True, help="features file (.npz) from extract")
    emb.add_argument("--out", required=True, help="output PNG")
    emb.add_argument("--seed", type=int, default=0, help="seeds the PCA and UMAP/t-SNE layout")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    log_to_console()
    try:
        if args.figure == "attention":
            if not 0.0 < args.threshold <= 1.0:
                raise ValueError(f"--threshold must be in (0, 1], got {args.threshold}")
            out = attention_png(args.image, args.out, args.checkpoint, args.size, args.threshold)
        else:
            out = embedding_png(args.features, args.out, args.seed)
    except (FileNotFoundError, ValueError, OSError, UnreadableImage) as err:
        raise SystemExit(f"error: {err}") from None
    log.info("wrote %s", out)


if __name__ == "__main__":
    main(sys.argv[1:])
