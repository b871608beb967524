"""The same DINO step in PyTorch, for the side-by-side on a GPU (issue 14): timm's XCiT and
DINO's head, loss, per-tensor clipping, AdamW and EMA (tests/torch_dino.py, written from
facebookresearch/dino), bf16 autocast, at each --batch. Prints and appends (--json) img/s,
step time, compile-free warm-up time and peak memory per batch.

    python scripts/bench/bench_torch_step.py --arch xcit_small_12_p8 --batch 32,64 \\
        [--global_size 224 --local_size 96 --n_local 5 --out_dim 65536] [--json F]

The crops are random tensors already on the device: the augmentation that our step runs on the
device (and DINO on the CPU, in its data loader) is not counted here, which favours PyTorch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from torch_dino import (  # noqa: E402  (the reference test's PyTorch DINO)
    DINOHead,
    DINOLoss,
    MultiCropWrapper,
    clip_gradients,
    get_params_groups,
)


def build(arch: str, out_dim: int, device: str):
    import timm

    def net():
        backbone = timm.create_model(f"{arch}_224", pretrained=False, num_classes=0)
        return MultiCropWrapper(backbone, DINOHead(backbone.num_features, out_dim))

    student, teacher = net().to(device), net().to(device)
    teacher.load_state_dict(student.state_dict())  # as main_dino.py (weight_norm: no deepcopy)
    for p in teacher.parameters():
        p.requires_grad = False
    return student, teacher


def bench(args: argparse.Namespace, batch: int) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    student, teacher = build(args.arch, args.out_dim, device)
    opt = torch.optim.AdamW(get_params_groups(student), lr=1e-4, weight_decay=0.04)
    loss_fn = DINOLoss(args.out_dim, 2 + args.n_local).to(device)
    crops = [torch.randn(batch, 3, args.global_size, args.global_size, device=device)
             for _ in range(2)]
    crops += [torch.randn(batch, 3, args.local_size, args.local_size, device=device)
              for _ in range(args.n_local)]
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32

    def step():
        with torch.autocast(device, dtype=dtype, enabled=dtype != torch.float32):
            teacher_out = teacher(crops[:2])
            student_out = student(crops)
            loss = loss_fn(student_out.float(), teacher_out.float(), 0.04)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(student, 3.0)
        opt.step()
        with torch.no_grad():
            params_s = [p for p in student.parameters()]
            params_t = [p for p in teacher.parameters()]
            torch._foreach_mul_(params_t, 0.996)
            torch._foreach_add_(params_t, params_s, alpha=0.004)
        return loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    for _ in range(2):
        step()
    sync()
    warmup = time.time() - t0
    t0 = time.time()
    for _ in range(args.steps):
        step()
    sync()
    dt = (time.time() - t0) / args.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return dict(framework="pytorch", torch=torch.__version__,
                device=torch.cuda.get_device_name() if device == "cuda" else "cpu",
                arch=args.arch, batch=batch, dtype=args.dtype,
                crops=f"2x{args.global_size}+{args.n_local}x{args.local_size}",
                warmup_s=warmup, step_ms=dt * 1e3, img_per_s=batch / dt, peak_gib=peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="xcit_small_12_p8")
    parser.add_argument("--batch", default="32", help="comma-separated global batch sizes")
    parser.add_argument("--global_size", type=int, default=224)
    parser.add_argument("--local_size", type=int, default=96)
    parser.add_argument("--n_local", type=int, default=5)
    parser.add_argument("--out_dim", type=int, default=65536)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default="", help="append one JSON line per batch to this file")
    args = parser.parse_args()
    for batch in (int(b) for b in args.batch.split(",")):
        try:
            record = bench(args, batch)
        except torch.OutOfMemoryError:
            print(f"batch {batch}: out of memory")
            break
        print(json.dumps(record))
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
