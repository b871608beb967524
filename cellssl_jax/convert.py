"""PyTorch XCiT checkpoints (timm, facebookresearch/xcit, DINO, the paper's teacher.pt) -> encoder.

The name/layout mapping lives beside the model (`models/timm_mapping.py`, no torch); this module
finds the backbone in a checkpoint file and writes the encoder. Only reading a `.pt`/`.pth` file
needs torch (always `torch.load(weights_only=True)`: pickles never run).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from cellssl_jax.cli import add_alias
from cellssl_jax.encoder import save_encoder
from cellssl_jax.logs import job
from cellssl_jax.models.pixels import IMAGENET_MEAN, IMAGENET_STD, PAPER_MEAN, PAPER_STD
from cellssl_jax.models.timm_mapping import (
    IGNORED_KEYS,
    ConversionError,
    infer_arch,
    official_to_timm,
    timm_to_flax,
)
from cellssl_jax.models.xcit import XCIT_VARIANTS

log = logging.getLogger(__name__)
PROG = "python -m cellssl_jax.convert"


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


def convert_state(ckpt: dict, arch: str | None = None, which: str = "teacher") -> Converted:
    """Any supported checkpoint (nested dicts of numpy arrays) -> Converted. No torch needed."""
    fmt, sd, head, ignored = split_checkpoint(ckpt, which)
    arch = arch or infer_arch(sd)
    if arch not in XCIT_VARIANTS:
        raise ConversionError(f"unknown arch {arch!r}; known: {', '.join(XCIT_VARIANTS)}")
    variables = timm_to_flax(sd, arch)
    counters = [k for k in sd if k.endswith(".num_batches_tracked")]
    ignored += sorted(k for k in sd if IGNORED_KEYS.search(k) and k not in counters)
    if counters:
        ignored.append(f"{len(counters)} BatchNorm num_batches_tracked")
    mean, std = (PAPER_MEAN, PAPER_STD) if fmt == "paper" else (IMAGENET_MEAN, IMAGENET_STD)
    return Converted(arch, dict(XCIT_VARIANTS[arch]), variables, fmt, mean, std, head, ignored)


def convert_file(path: str | Path, arch: str | None = None, which: str = "teacher") -> Converted:
    return convert_state(read_checkpoint(path), arch, which)


# ---- command line -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a PyTorch XCiT checkpoint (timm, facebookresearch/xcit, DINO hub, "
        "DINO training checkpoint, the paper's teacher.pt; .pt/.pth or .safetensors) into a "
        "cellssl-jax encoder file.",
    )
    parser.add_argument("src", type=Path, help="checkpoint file")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: encoder.msgpack, head.npz (a DINO checkpoint's "
                        "projection head, when present) and convert.log")
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
    parser.add_argument("--head_out", type=Path, default=None,
                        help="write the DINO head here instead of <out>/head.npz (an error if "
                        "the checkpoint has none)")
    add_alias(parser, "--head-out", "--head_out", type=Path)
    args = parser.parse_args(argv)
    encoder_path = args.out / "encoder.msgpack"
    if args.out.suffix == ".msgpack":  # the old spelling: --out named the encoder file
        print(f"{PROG}: warning: --out FILE.msgpack is deprecated and will be removed in the next "
              "release; --out names a folder (FOLDER/encoder.msgpack)", file=sys.stderr)
        encoder_path, args.out = args.out, args.out.parent
    with job(PROG, args.out):
        return _convert(args, encoder_path)


def _convert(args: argparse.Namespace, encoder_path: Path) -> Path:
    try:
        conv = convert_file(args.src, args.arch, args.which)
    except ImportError as err:  # safetensors / torch missing: the user's environment
        raise ValueError(str(err)) from None
    mean = tuple(args.mean) if args.mean else conv.mean
    std = tuple(args.std) if args.std else conv.std
    if any(s <= 0 for s in std):
        raise ValueError(f"--std must be positive, got {list(std)}")
    if args.head_out is not None and not conv.head:
        raise ValueError(f"{args.src} has no DINO head to write to --head_out")
    source = f"{conv.format} checkpoint {args.src.name}" + (
        f" ({args.which})" if conv.format == "dino-train" else ""
    )
    out = save_encoder(encoder_path, conv.arch, conv.model_config, conv.variables, mean, std,
                       source)
    n_params = sum(np.size(a) for a in jax.tree_util.tree_leaves(conv.variables["params"]))
    log.info("format %s, arch %s (%d parameters), mean %s, std %s", conv.format, conv.arch,
             n_params, list(mean), list(std))
    if conv.ignored:
        log.info("left out: %s", ", ".join(conv.ignored))
    log.info("wrote encoder %s", out)
    if conv.head:
        head_path = args.head_out or args.out / "head.npz"
        head_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(head_path, **conv.head)
        log.info("wrote DINO head (%d arrays) %s", len(conv.head), head_path)
    return out

if __name__ == "__main__":
    main()
