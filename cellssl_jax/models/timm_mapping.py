"""timm's XCiT names and layouts <-> our Flax variables, beside the model (as big_vision keeps
`load()` beside `vit.py`). Works on dicts of numpy arrays: no torch, no file reading (that and the
command line are `cellssl_jax/convert.py`).
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from cellssl_jax.models.xcit import XCIT_VARIANTS, XCiT, xcit

# timm keys of a backbone that have no place in the encoder (classifier head, BN step counters).
IGNORED_KEYS = re.compile(r"^head\.|\.num_batches_tracked$")


class ConversionError(ValueError):
    """A checkpoint does not match the architecture; the message lists the offending keys."""


def _conv_kernel(w: np.ndarray) -> np.ndarray:  # torch [O, I, kh, kw] -> flax [kh, kw, I, O]
    return w.transpose(2, 3, 1, 0)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:  # torch [C, 1, 3, 3] -> ours [3, 3, C]
    return w[:, 0].transpose(1, 2, 0)


def _dense_kernel(w: np.ndarray) -> np.ndarray:  # torch [O, I] (or [O, I, 1, 1]) -> flax [I, O]
    return w.reshape(w.shape[0], w.shape[1]).T


def _identity(w: np.ndarray) -> np.ndarray:
    return w


def _timm_name(path: tuple[str, ...]) -> tuple[str, Any]:
    """Flax variable path ("params"/"batch_stats", module..., leaf) -> (timm key, transform)."""
    collection, *mods, leaf = path
    parts = []
    for m in mods:
        if m.startswith("patch_embed") or m.startswith("pos_embed") or m == "norm":
            parts.append(m)
        elif (hit := re.fullmatch(r"(blocks|cls_attn_blocks)_(\d+)", m)) is not None:
            parts += [hit.group(1), hit.group(2)]
        elif (hit := re.fullmatch(r"conv_(\d+)", m)) is not None:  # patch_embed.proj.<2j>.0
            parts += ["proj", str(2 * int(hit.group(1))), "0"]
        elif (hit := re.fullmatch(r"bn_(\d+)", m)) is not None:  # patch_embed.proj.<2j>.1
            parts += ["proj", str(2 * int(hit.group(1))), "1"]
        else:
            parts.append(m)
    if collection == "batch_stats":
        return ".".join(parts + ["running_" + leaf]), _identity
    if leaf.endswith("_kernel") or leaf.endswith("_bias"):  # LPI depthwise convs
        conv, kind = leaf.rsplit("_", 1)
        key = ".".join(parts + [conv, "weight" if kind == "kernel" else "bias"])
        return key, _depthwise_kernel if kind == "kernel" else _identity
    if leaf == "kernel":
        return ".".join(parts + ["weight"]), _conv_kernel if mods[-1].startswith("conv_") else (
            _dense_kernel
        )
    if leaf == "scale":  # LayerNorm / BatchNorm weight
        return ".".join(parts + ["weight"]), _identity
    return ".".join(parts + [leaf]), _identity


def abstract_variables(model: XCiT) -> dict:
    """Shapes of the model's variables, computed without allocating them."""
    return jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 3), np.float32))
    )


def timm_to_flax(state_dict: dict[str, np.ndarray], arch: str, **overrides: Any) -> dict:
    """Map a timm-named XCiT state dict (numpy arrays) onto our Flax variables.

    Raises ConversionError listing every missing, unexpected and mis-shaped key.
    """
    model = xcit(arch, **overrides)
    flat = traverse_util.flatten_dict(abstract_variables(model))
    out, used, missing, misshaped = {}, set(), [], []
    for path, spec in flat.items():
        key, transform = _timm_name(path)
        if key not in state_dict:
            missing.append(key)
            continue
        used.add(key)
        value = transform(np.asarray(state_dict[key], dtype=np.float32))
        if value.shape != spec.shape:
            misshaped.append(
                f"{key}: checkpoint {tuple(state_dict[key].shape)} -> "
                f"{value.shape}, model expects {spec.shape}"
            )
            continue
        out[path] = value
    unexpected = sorted(k for k in state_dict if k not in used and not IGNORED_KEYS.search(k))
    if missing or unexpected or misshaped:
        lines = [f"checkpoint does not match {arch}:"]
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", misshaped),
        ):
            if keys:
                lines.append(
                    f"  {len(keys)} {title}: "
                    + ", ".join(keys[:20])
                    + (" ..." if len(keys) > 20 else "")
                )
        raise ConversionError("\n".join(lines))
    return traverse_util.unflatten_dict(out)


def flax_to_timm(variables: dict) -> dict[str, np.ndarray]:
    """Inverse of `timm_to_flax` (timm key names, torch layouts); BN counters not included."""
    sd = {}
    for path, value in traverse_util.flatten_dict(variables).items():
        key, transform = _timm_name(path)
        v = np.asarray(value, dtype=np.float32)
        if transform is _conv_kernel:
            v = v.transpose(3, 2, 0, 1)
        elif transform is _depthwise_kernel:
            v = v.transpose(2, 0, 1)[:, None]
        elif transform is _dense_kernel:
            v = v.T
            if key.endswith("token_projection.weight"):
                v = v[:, :, None, None]
        sd[key] = v
    return sd


def official_to_timm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """facebookresearch/xcit names -> timm's (as timm's checkpoint_filter_fn does)."""
    out = {}
    for key, value in sd.items():
        key = key.replace("pos_embeder.", "pos_embed.")
        hit = re.fullmatch(r"(cls_attn_blocks\.\d+\.attn)\.qkv\.(weight|bias)", key)
        if hit is None:
            out[key] = value
            continue
        parts = value.reshape(3, value.shape[0] // 3, *value.shape[1:])
        for name, part in zip("qkv", parts, strict=True):
            out[f"{hit.group(1)}.{name}.{hit.group(2)}"] = part
    return out


def infer_arch(sd: dict[str, np.ndarray]) -> str:
    """The registered variant whose patch size, width, depth and heads fit the weights."""
    try:
        dim = sd["cls_token"].shape[-1]
        heads = sd["blocks.0.attn.temperature"].shape[0]
    except KeyError as err:
        raise ConversionError(f"not an XCiT backbone: no {err.args[0]!r} key") from err
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    patch = 16 if "patch_embed.proj.6.0.weight" in sd else 8
    for name, cfg in XCIT_VARIANTS.items():
        if (cfg["patch_size"], cfg["embed_dim"], cfg["depth"], cfg["num_heads"]) == (
            patch,
            dim,
            depth,
            heads,
        ):
            return name
    raise ConversionError(
        f"no registered XCiT has patch {patch}, width {dim}, depth {depth}, "
        f"{heads} heads; pass --arch"
    )
