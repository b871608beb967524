"""Figures of the encoder and of features: class-attention maps of one cell (paper Fig. 5) and
a 2-D embedding of features coloured by class (paper Fig. 6). The library under `visualize`
and the demo: it takes a loaded encoder and `Features`, never file names to read them from.
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a lab server or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cellssl_jax.data.images import read_rgb  # noqa: E402
from cellssl_jax.featurize import read_size  # noqa: E402
from cellssl_jax.fewshot.features import Features  # noqa: E402

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
    """Fig. 5 layout: the cell, the heads' mean, then one column per head; top row each map
    over the cell (as a fraction of its own maximum, so heads of different sharpness read on
    one colour bar), bottom row the region where it is >= `threshold` x its maximum."""
    heads = attention.shape[0]
    maps = upsample(np.concatenate([attention.mean(0, keepdims=True), attention]),
                    image.shape[:2], patch)
    maps = maps / np.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)
    names = ["mean of heads", *(f"head {h}" for h in range(heads))]
    fig, axes = plt.subplots(2, heads + 2, figsize=(1.9 * (heads + 2) + 0.8, 4.3),
                             squeeze=False, layout="constrained")
    for row, label in enumerate(("attention over the cell", f">= {threshold:.0%} of max")):
        axes[row, 0].imshow(image)
        axes[row, 0].set_ylabel(label, fontsize=8)
    axes[0, 0].set_title("cell", fontsize=8)
    cmap = plt.get_cmap("inferno")
    for k, (name, m) in enumerate(zip(names, maps, strict=True), 1):
        axes[0, k].imshow(image)
        overlay = cmap(m)
        overlay[..., 3] = 0.15 + 0.75 * m  # the cell shows through where attention is low
        axes[0, k].imshow(overlay)
        axes[0, k].set_title(name, fontsize=8, fontweight="bold" if k == 1 else "normal")
        keep = m >= threshold
        axes[1, k].imshow(np.where(keep[..., None], image, (image * 0.4).astype(np.uint8)))
        axes[1, k].contour(keep, levels=[0.5], colors="yellow", linewidths=1.2)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    shown = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(0.0, 1.0), cmap)
    bar = fig.colorbar(shown, ax=axes[0, :], fraction=0.02, pad=0.01)
    bar.set_label("attention / map's max", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def attention_png(
    image_path: str | Path,
    out: str | Path,
    encoder,
    size: int | str | None = None,
    threshold: float = THRESHOLD,
) -> Path:
    """Class-attention maps of `encoder`'s last class-attention block for one cell image, read
    at the size extraction reads it (featurize.read_size; `size`: a side S instead)."""
    cell = read_size(encoder, size).resize(read_rgb(image_path))
    att = encoder.forward(cell[None])["cls_attention"][0]
    title = (f"{Path(image_path).name} - {encoder.name} ({encoder.arch}), "
             "last class-attention block")
    return attention_figure(cell, att, encoder.model.patch_size, Path(out), threshold, title)


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


def classes_from_csv(csv_path: str | Path, paths: list[str]) -> tuple[np.ndarray, list[str], str]:
    """Per-cell classes from a CSV with a `file` column and a `predicted` (classify's
    predictions.csv) or `class` column (a labels file), matched to `paths` by the file name
    relative to any parent folder -> (labels, -1 where the CSV has no row; class names;
    column used)."""
    with open(csv_path, newline="") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        column = next((c for c in ("predicted", "class") if c in fields), None)
        if "file" not in fields or column is None:
            raise ValueError(
                f"{csv_path}: expected a 'file' column and a 'predicted' (classify's "
                f"predictions.csv) or 'class' column, found {fields}"
            )
        given = {Path(row["file"]).as_posix(): row[column] for row in reader}
    names = sorted(set(given.values()))
    labels = np.full(len(paths), -1, np.int64)
    for i, path in enumerate(paths):
        parts = Path(path).parts
        for k in range(len(parts)):  # longest suffix first: "a/x.jpg" before "x.jpg"
            cls = given.get(Path(*parts[k:]).as_posix())
            if cls is not None:
                labels[i] = names.index(cls)
                break
    if not (labels >= 0).any():
        raise ValueError(f"no file of {csv_path} matches a cell of the features file")
    return labels, names, column


def embedding_png(
    feats: Features, out: str | Path, seed: int = 0, colour_by: str | Path | None = None
) -> Path:
    """Scatter plot of the features' 2-D embedding, coloured by their classes (grey:
    unlabelled) or, with `colour_by`, by the classes of a CSV (classes_from_csv)."""
    if len(feats.features) < 5:
        raise ValueError(f"{feats.source}: {len(feats.features)} cells; an embedding needs >= 5")
    labels, names, grey = feats.labels, feats.class_names, "unlabelled"
    coloured = "class"
    if colour_by is not None:
        labels, names, column = classes_from_csv(colour_by, feats.paths)
        grey = f"not in {Path(colour_by).name}"
        coloured = f"{'predicted class' if column == 'predicted' else 'class'} from "
        coloured += Path(colour_by).name
    xy, method = embed_2d(feats.features, seed)
    fig, ax = plt.subplots(figsize=(7.5, 6))
    unl = labels < 0
    dot = 20 if len(xy) < 1000 else 6  # visible dots for a sample, no blobs for a dataset
    if unl.any():
        ax.scatter(*xy[unl].T, s=dot, c="lightgrey", label=f"{grey} ({unl.sum()})",
                   linewidths=0)
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for k, name in enumerate(names):
        sel = labels == k
        ax.scatter(
            *xy[sel].T, s=dot, color=cmap(k % cmap.N), label=f"{name} ({sel.sum()})", linewidths=0
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{method} of {len(xy)} cells - {feats.encoder or 'features'}\n"
                 f"coloured by {coloured}", fontsize=10)
    ax.legend(fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
