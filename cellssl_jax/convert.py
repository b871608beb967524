"""PyTorch XCiT checkpoints (timm, facebookresearch/xcit, DINO, the paper's teacher.pt) -> encoder.

The mapping itself (`timm_to_flax`) works on a dict of numpy arrays and needs no torch; only
reading a `.pt`/`.pth` file does (always `torch.load(weights_only=True)`: pickles never run).
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from cellssl_jax.models.xcit import XCIT_VARIANTS, XCiT, xcit

log = logging.getLogger(__name__)

PAPER_MEAN = (0.5, 0.5, 0.5)  # DINO training in the paper scales pixels to [-1, 1]
PAPER_STD = (0.5, 0.5, 0.5)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# timm keys of a backbone that have no place in the encoder (classifier head, BN step counters).
_IGNORED = re.compile(r"^head\.|\.num_batches_tracked$")


class ConversionError(ValueError):
    """A checkpoint does not match the architecture; the message lists the offending keys."""


@dataclass
class Converted:
    """A converted checkpoint: the Flax backbone variables, plus the DINO head when present.

    `head` keeps torch names (prefix stripped, e.g. "mlp.0.weight", "last_layer.weight_g") and
    torch layouts; `ignored` lists checkpoint entries deliberately left out (classifier head,
    BatchNorm counters, the unused DINO network)."""

    arch: str
    model_config: dict
    variables: dict
    format: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    head: dict[str, np.ndarray] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


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
    unexpected = sorted(k for k in state_dict if k not in used and not _IGNORED.search(k))
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


# ---- reading checkpoint files -------------------------------------------------------------


def _to_numpy_tree(obj: Any) -> Any:
    """torch tensors -> numpy, recursively through dicts/lists; other leaves kept as they are."""
    if isinstance(obj, dict):
        return {k: _to_numpy_tree(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_to_numpy_tree(v) for v in obj)
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):
        return obj.detach().cpu().float().numpy()
    return obj


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint file as nested dicts of numpy arrays (.safetensors needs no torch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        return dict(load_file(str(path)))
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"reading {path.name} needs torch (pip install torch), or convert it "
            "to .safetensors first"
        ) from err
    # DINO checkpoints store their argparse Namespace; it holds plain values and is safe to allow.
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"cannot read {path} with torch.load(weights_only=True): {err}"
            ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    return _to_numpy_tree(obj)


# ---- from any supported layout to timm names ----------------------------------------------


def _is_state_dict(d: Any) -> bool:
    return isinstance(d, dict) and any(isinstance(v, np.ndarray) for v in d.values())


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def split_checkpoint(ckpt: dict, which: str = "teacher") -> tuple[str, dict, dict, list[str]]:
    """Find the backbone in any supported layout.

    Returns (format, backbone state dict with timm names, DINO head, ignored top-level entries).
    Formats: "timm", "xcit-official" (facebookresearch/xcit, DINO hub: `pos_embeder.*`, fused
    class-attention qkv), "dino-train" ({"teacher", "student"}), "paper" (teacher.pt with
    `backbone.*` and `projection_head.*`).
    """
    fmt, ignored = None, []
    if "teacher" in ckpt or "student" in ckpt:
        if which not in ckpt:
            present = sorted(k for k in ckpt if k in ("teacher", "student"))
            raise ValueError(f"checkpoint has {present} but not {which!r}")
        fmt = "dino-train"
        ignored = [k for k in ckpt if k != which]
        ckpt = ckpt[which]
    for wrapper in ("model", "state_dict", "model_state_dict"):
        if not _is_state_dict(ckpt) and isinstance(ckpt.get(wrapper), dict):
            ignored += [k for k in ckpt if k != wrapper]
            ckpt = ckpt[wrapper]
    if not _is_state_dict(ckpt):
        raise ValueError(
            "no state dict found (expected tensors at the top level or under "
            "'model', 'state_dict', 'teacher' or 'student')"
        )
    sd = {
        _strip(k, ("module.", "_orig_mod.")): v
        for k, v in ckpt.items()
        if isinstance(v, np.ndarray)
    }
    head: dict[str, np.ndarray] = {}
    if any(k.startswith("backbone.") for k in sd):
        backbone = {}
        for k, v in sd.items():
            if k.startswith("backbone."):
                backbone[k[len("backbone.") :]] = v
            elif k.startswith(("head.", "projection_head.")):
                fmt = fmt or ("paper" if k.startswith("projection_head.") else "dino-train")
                head[k.split(".", 1)[1]] = v
            else:
                ignored.append(k)
        sd = backbone
    head = {_weight_norm_name(k): v for k, v in head.items()}
    if any(
        k.startswith("pos_embeder.") or re.match(r"cls_attn_blocks\.\d+\.attn\.qkv\.", k)
        for k in sd
    ):
        fmt = fmt or "xcit-official"
        sd = official_to_timm(sd)
    return fmt or "timm", sd, head, ignored


def _weight_norm_name(key: str) -> str:
    """torch.nn.utils.parametrizations.weight_norm names -> the classic weight_g / weight_v."""
    return key.replace("parametrizations.weight.original0", "weight_g").replace(
        "parametrizations.weight.original1", "weight_v"
    )


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


def convert_state(ckpt: dict, arch: str | None = None, which: str = "teacher") -> Converted:
    """Any supported checkpoint (nested dicts of numpy arrays) -> Converted. No torch needed."""
    fmt, sd, head, ignored = split_checkpoint(ckpt, which)
    arch = arch or infer_arch(sd)
    if arch not in XCIT_VARIANTS:
        raise ConversionError(f"unknown arch {arch!r}; known: {', '.join(XCIT_VARIANTS)}")
    variables = timm_to_flax(sd, arch)
    counters = [k for k in sd if k.endswith(".num_batches_tracked")]
    ignored += sorted(k for k in sd if _IGNORED.search(k) and k not in counters)
    if counters:
        ignored.append(f"{len(counters)} BatchNorm num_batches_tracked")
    mean, std = (PAPER_MEAN, PAPER_STD) if fmt == "paper" else (IMAGENET_MEAN, IMAGENET_STD)
    return Converted(arch, dict(XCIT_VARIANTS[arch]), variables, fmt, mean, std, head, ignored)


def convert_file(path: str | Path, arch: str | None = None, which: str = "teacher") -> Converted:
    return convert_state(read_checkpoint(path), arch, which)


# ---- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    from cellssl_jax.encoder import save_encoder

    parser = argparse.ArgumentParser(
        prog="python -m cellssl_jax.convert",
        description="Convert a PyTorch XCiT checkpoint (timm, facebookresearch/xcit, DINO hub, "
        "DINO training checkpoint, the paper's teacher.pt; .pt/.pth or .safetensors) into a "
        "cellssl-jax encoder file.",
    )
    parser.add_argument("src", type=Path, help="checkpoint file")
    parser.add_argument("--out", type=Path, required=True, help="encoder file to write (.msgpack)")
    parser.add_argument(
        "--arch",
        choices=sorted(XCIT_VARIANTS),
        help="variant (default: inferred from the weights' shapes)",
    )
    parser.add_argument(
        "--which",
        choices=("teacher", "student"),
        default="teacher",
        help="network of a DINO training checkpoint (default: teacher)",
    )
    parser.add_argument(
        "--mean",
        type=float,
        nargs=3,
        metavar="M",
        help="pixel mean in [0, 1] (default: 0.5 for the paper's teacher.pt, ImageNet's otherwise)",
    )
    parser.add_argument("--std", type=float, nargs=3, metavar="S", help="pixel std, as --mean")
    parser.add_argument(
        "--head-out",
        type=Path,
        help="also write the DINO projection head (when present) to this .npz",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        conv = convert_file(args.src, args.arch, args.which)
    except (FileNotFoundError, ImportError, ValueError) as err:  # ConversionError is a ValueError
        raise SystemExit(f"convert: {err}") from None
    mean = tuple(args.mean) if args.mean else conv.mean
    std = tuple(args.std) if args.std else conv.std
    if any(s <= 0 for s in std):
        raise SystemExit(f"convert: --std must be positive, got {list(std)}")
    source = f"{conv.format} checkpoint {args.src.name}" + (
        f" ({args.which})" if conv.format == "dino-train" else ""
    )
    out = save_encoder(args.out, conv.arch, conv.model_config, conv.variables, mean, std, source)
    n_params = sum(np.size(a) for a in jax.tree_util.tree_leaves(conv.variables["params"]))
    log.info(
        "format %s, arch %s (%d parameters), mean %s, std %s",
        conv.format,
        conv.arch,
        n_params,
        list(mean),
        list(std),
    )
    if conv.ignored:
        log.info("left out: %s", ", ".join(conv.ignored))
    log.info("wrote encoder %s", out)
    if args.head_out is not None:
        if not conv.head:
            raise SystemExit(f"convert: {args.src} has no DINO head to write to --head-out")
        args.head_out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.head_out, **conv.head)
        log.info("wrote DINO head (%d arrays) %s", len(conv.head), args.head_out)
    return out


if __name__ == "__main__":
    main()
