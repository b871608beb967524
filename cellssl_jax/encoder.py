"""The encoder file: one self-describing msgpack holding an XCiT's config, pixel stats and weights.

Layout: {"meta": json string, "variables": {"params": ..., "batch_stats": ...}}. meta carries
"arch" (variant name), "model_config" (XCiT kwargs), "mean"/"std" (per channel, pixels in [0, 1])
"source" (free text) and, for encoders made for one resolution, "input_size" (the square side
`extract` resizes cells to: the training side, or one measured to read better, as for the bundled
encoder), so `extract` needs no other argument to use it. An optional "crop" (a dict of
featurize/crop.py's `CropRule` fields, e.g. {"rule": "stain", "window": 192, "margin": 0.3,
"min_stain": 40}) makes the lab jobs read only the cell, at the scale of `input_size`; files
without it are read whole, as before. An optional "merge_tokens_after" k makes `embed` take
the token-merging fast path (models/xcit_pool.py: patch tokens merged 2 x 2 after block k);
`forward` (attention maps) always runs the exact model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import uuid
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from cellssl_jax.models.xcit import XCiT
from cellssl_jax.models.xcit_pool import pooled_apply

DEFAULT_ENCODER = Path(__file__).parent / "assets" / "encoder_default.msgpack"
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


def save_encoder(
    path: str | Path,
    arch: str,
    model_config: dict,
    variables: dict,
    mean: Sequence[float],
    std: Sequence[float],
    source: str,
    input_size: int | None = None,
    crop: dict | None = None,
) -> Path:
    """Write an encoder file; returns its path. `model_config` must be JSON-serialisable.

    `input_size`: the side cells are resized to for this encoder, normally the training side
    (None: any size, e.g. converted ImageNet weights); `extract` and `visualize` default to it.
    `crop`: the crop rule the lab jobs read cells with (featurize/crop.py), at that scale.
    """
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean/std need 3 channels, got {list(mean)} / {list(std)}")
    if crop and not input_size:
        raise ValueError("a crop rule needs an input_size (the scale it reads cells at)")
    meta = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "model_config": dict(model_config),
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        "source": source,
        "input_size": int(input_size) if input_size else None,
    }
    if crop:
        meta["crop"] = dict(crop)
    tree = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
    tree = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float32), tree)
    payload = serialization.msgpack_serialize({"meta": json.dumps(meta), "variables": tree})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def random_init_encoder(
    path: str | Path,
    arch: str,
    model_config: dict,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Write the XCiT of `model_config` at random initialisation (`seed`) as an encoder file.

    The no-pretraining baseline that benchmarks and model cards compare an encoder against.
    """
    model = XCiT(**model_config)
    # the weights do not depend on the sample's size: a small one keeps init cheap
    variables = jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros((1, 64, 64, 3)))
    return save_encoder(path, arch, model_config, variables, mean, std,
                        f"random initialisation (seed {seed})", input_size)


def rewrite_meta(path: str | Path, out: str | Path, **changes: Any) -> Path:
    """A copy of encoder file `path` at `out` with meta fields changed (None: removed); the
    weights are copied as stored, so they stay byte-identical (`weights_sha256`)."""
    blob = serialization.msgpack_restore(Path(path).read_bytes())
    meta = json.loads(blob["meta"])
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    if meta.get("crop") and not meta.get("input_size"):
        raise ValueError("a crop rule needs an input_size (the scale it reads cells at)")
    payload = serialization.msgpack_serialize({"meta": json.dumps(meta),
                                               "variables": blob["variables"]})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(payload)
    return out


def weights_sha256(path: str | Path) -> str:
    """sha256 of an encoder file's weights alone (their msgpack), whatever its meta says."""
    blob = serialization.msgpack_restore(Path(path).read_bytes())
    return hashlib.sha256(serialization.msgpack_serialize(blob["variables"])).hexdigest()


class Encoder:
    """A loaded encoder: `embed` uint8 images to CLS features, `forward` for the full model dict."""

    def __init__(self, path: Path, meta: dict, variables: dict, sha256: str):
        self.path = path
        self.meta = meta
        self.name = path.stem
        self.sha256 = sha256
        self.arch: str = meta["arch"]
        self.model = XCiT(**meta["model_config"])
        self.variables = variables
        self.mean = np.asarray(meta["mean"], np.float32)
        self.std = np.asarray(meta["std"], np.float32)
        self.source: str = meta.get("source", "")
        self.input_size: int | None = meta.get("input_size")
        self.crop: dict | None = meta.get("crop")  # the crop rule's fields (featurize/crop.py)
        merge = meta.get("merge_tokens_after")
        if merge is not None and not (isinstance(merge, int) and merge >= 0):
            raise ValueError(f"{path}: merge_tokens_after must be a block index >= 0, "
                             f"got {merge!r}")
        self.merge_tokens_after: int | None = merge
        # where `embed` keeps its traced and lowered function per batch shape (jax.export),
        # so a later process skips tracing it; None: traced in every process (`export_cache`)
        self.export_dir: Path | None = None
        self._exported: dict[tuple, Any] = {}

    @property
    def dim(self) -> int:
        return self.model.embed_dim

    @cached_property
    def _forward(self):
        model, mean, std = self.model, self.mean, self.std  # numpy: no tracer if built in a trace

        def run(variables, images):
            x = (images.astype(jnp.float32) / 255.0 - mean) / std
            return model.apply(variables, x, train=False)

        return jax.jit(run)

    @cached_property
    def _embed(self):
        """The CLS features: the exact model, or the token-merging fast path if the file asks."""
        if self.merge_tokens_after is None:
            return lambda variables, images: self._forward(variables, images)["cls"]
        model, mean, std = self.model, self.mean, self.std  # numpy: no tracer if built in a trace
        after = self.merge_tokens_after

        def run(variables, images):
            x = (images.astype(jnp.float32) / 255.0 - mean) / std
            return pooled_apply(model, variables, x, after)["cls"]

        return jax.jit(run)

    def export_name(self, shape: tuple[int, ...], dtype: Any) -> str:
        """The file name of `embed`'s exported function for input `shape`: keyed by the
        encoder file's sha256 (weights, model config, merge fast path), the input shape and
        dtype, JAX's version and the backend."""
        shape_s = "x".join(map(str, shape))
        return (f"embed-{self.sha256[:32]}-{shape_s}-{np.dtype(dtype).name}-"
                f"jax{jax.__version__}-{jax.default_backend()}.jaxexport")

    def _exported_embed(self, images: np.ndarray):
        """`embed`'s function for this input shape from `export_dir` (exported and saved there
        on the first call of any process), jitted; None when it cannot be had (then `embed`
        traces as usual)."""
        key = (images.shape, images.dtype.str)
        if key in self._exported:
            return self._exported[key]
        fn = None
        path = self.export_dir / self.export_name(images.shape, images.dtype)
        try:
            if path.is_file():
                exported = jax.export.deserialize(bytearray(path.read_bytes()))
                log.info("encoder function for %s from the export cache %s",
                         "x".join(map(str, images.shape)), path.parent)
            else:
                spec = jax.ShapeDtypeStruct(images.shape, images.dtype)
                exported = jax.export.export(jax.jit(self._embed))(self.variables, spec)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
                tmp.write_bytes(exported.serialize())
                os.replace(tmp, path)  # whole or absent for a concurrent job
                log.info("encoder function for %s saved to the export cache %s",
                         "x".join(map(str, images.shape)), path.parent)
            fn = jax.jit(exported.call)
        except Exception as err:  # an unreadable or foreign file: trace as usual
            log.warning("encoder export cache %s not used (%s)", path, err)
        self._exported[key] = fn
        return fn

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 images [B, H, W, 3], got {images.dtype} {images.shape}"
            )
        return images

    def forward(self, images_uint8: np.ndarray) -> dict[str, np.ndarray]:
        """The model's output dict ("cls", "patch_tokens", "cls_attention") as numpy arrays."""
        out = self._forward(self.variables, self._check(images_uint8))
        return {k: np.asarray(v) for k, v in out.items()}

    def embed(self, images_uint8: np.ndarray) -> np.ndarray:
        """CLS features [B, D] float32 (after the final LayerNorm: the paper's feature)."""
        images = self._check(images_uint8)
        if len(images) == 0:
            return np.zeros((0, self.dim), np.float32)
        fn = self._exported_embed(images) if self.export_dir is not None else None
        return np.asarray((fn or self._embed)(self.variables, images), dtype=np.float32)

    def __repr__(self) -> str:
        return (f"Encoder({self.name!r}, arch={self.arch}, dim={self.dim}, "
                f"sha256={self.sha256[:12]})")


def load_encoder(path: str | Path | None = None) -> Encoder:
    """Load an encoder file (None: the bundled default encoder)."""
    if path is None:
        path = DEFAULT_ENCODER
        if not path.exists():
            raise FileNotFoundError(
                f"no bundled default encoder at {path}; pass an encoder file "
                "(make one with `python -m cellssl_jax.convert` or by DINO training)"
            )
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder file not found: {path}")
    payload = path.read_bytes()
    try:
        blob: dict[str, Any] = serialization.msgpack_restore(payload)
        meta = json.loads(blob["meta"])
        variables = blob["variables"]
        missing = {"arch", "model_config", "mean", "std"} - set(meta)
    except Exception as err:  # msgpack/json/key errors all mean "not an encoder file"
        raise ValueError(f"{path} is not a cellssl-jax encoder file ({err})") from err
    if missing:
        raise ValueError(f"{path}: encoder meta lacks {sorted(missing)}")
    # one transfer (jnp.asarray per leaf compiled a small conversion per weight shape)
    variables = jax.device_put(dict(variables))
    return Encoder(path, meta, variables, hashlib.sha256(payload).hexdigest())


def export_cache(encoder: Encoder, folder: str | Path | None) -> Path | None:
    """Keep `encoder.embed`'s traced and lowered function per batch shape in `folder`
    (jax.export, beside JAX's compilation cache under the features cache root), so a later
    process deserialises it instead of tracing the model: with the compilation cache, a second
    run neither traces nor compiles the encoder. None, or no `flatbuffers` (jax.export's
    serialisation needs it): the encoder traces in every process, as before."""
    if folder is None or importlib.util.find_spec("flatbuffers") is None:
        encoder.export_dir = None
    else:
        encoder.export_dir = Path(folder)
    return encoder.export_dir
