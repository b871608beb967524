"""Analytic FLOP count of XCiT, the DINO head and one DINO training sample, for MFU.

XLA's cost analysis is no measure of the model's work (on GPU it undercounts the fused and
custom-call kernels), so MFU is computed from the architecture instead, by the convention of
the MFU literature and of timm's published GMACs: multiply-accumulates of the matmuls and
convolutions (depthwise included), one MAC = 2 FLOPs; norms, activations, softmax and the
optimiser are not counted. ``xcit_macs`` equals timm's count (torch's FlopCounterMode on timm's
model; tests/test_flops.py), including the per-image positional projection and, when asked,
the classifier.
"""

from __future__ import annotations

import math


def _half(side: int) -> int:
    """A 3x3 stride-2 convolution padded by 1 maps a side to ceil(side / 2)."""
    return math.ceil(side / 2)


def xcit_macs(
    *,
    patch_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    height: int,
    width: int,
    mlp_ratio: float = 4.0,
    cls_attn_layers: int = 2,
    num_classes: int = 0,
    pos_hidden_dim: int = 32,
    **_: object,
) -> int:
    """MACs of one XCiT forward on one ``height x width`` image (extra XCiT kwargs ignored, so
    ``XCIT_VARIANTS`` entries can be passed as they are)."""
    c, h, w = embed_dim, height, width
    widths = {8: [c // 4, c // 2, c], 16: [c // 8, c // 4, c // 2, c]}[patch_size]
    macs, cin = 0, 3
    for cout in widths:  # patch embedding: 3x3 stride-2 convolutions
        h, w = _half(h), _half(w)
        macs += h * w * 9 * cin * cout
        cin = cout
    n = h * w
    hidden = int(c * mlp_ratio)
    macs += n * 2 * pos_hidden_dim * c  # Fourier features -> embedding (1x1 conv)
    block = (
        n * c * 3 * c  # qkv
        + 2 * n * c * (c // num_heads)  # q^T k (d x d per head) and attn @ v
        + n * c * c  # proj
        + 2 * n * 9 * c  # LPI: two depthwise 3x3 convolutions
        + 2 * n * c * hidden  # MLP
    )
    macs += depth * block
    t = n + 1  # class attention: the CLS token queries all tokens
    class_block = (
        c * c  # q (CLS only)
        + 2 * t * c * c  # k, v
        + 2 * t * c  # q k^T and attn @ v
        + c * c  # proj
        + 2 * c * hidden  # MLP on the CLS token only
    )
    macs += cls_attn_layers * class_block
    return macs + c * num_classes


def dino_head_macs(
    in_dim: int, *, out_dim: int, hidden_dim: int, bottleneck_dim: int, nlayers: int
) -> int:
    """MACs of the DINO head on one CLS token: MLP to the bottleneck, then the prototypes."""
    dims = [in_dim] + [hidden_dim] * (max(nlayers, 1) - 1) + [bottleneck_dim]
    mlp = sum(a * b for a, b in zip(dims[:-1], dims[1:], strict=True))
    return mlp + bottleneck_dim * out_dim


def dino_sample_flops(
    arch: dict,
    head: dict,
    *,
    global_size: int,
    local_size: int,
    n_local: int,
    n_global: int = 2,
    backward_factor: float = 3.0,
) -> float:
    """FLOPs one DINO sample costs a training step.

    Student forward and backward (``backward_factor`` x forward: the backward does two
    matmuls per forward one) over ``n_global`` + ``n_local`` crops, teacher forward over the
    global crops; the head on every crop. ``arch``: XCiT kwargs (``XCIT_VARIANTS`` entry with
    overrides); ``head``: ``dino_head_macs`` kwargs.
    """
    def crop(size: int) -> int:
        backbone = xcit_macs(**arch, height=size, width=size)
        return backbone + dino_head_macs(arch["embed_dim"], **head)

    student = n_global * crop(global_size) + n_local * crop(local_size)
    teacher = n_global * crop(global_size)
    return 2.0 * (backward_factor * student + teacher)
