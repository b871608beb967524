"""Flax XCiT == timm XCiT (float32, eval mode) on random weights, square and odd sizes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from cellssl_jax.models.timm_mapping import timm_to_flax
from cellssl_jax.models.xcit import xcit

TOL = 1e-4


def _images(batch: int, height: int, width: int):
    """Noise on per-image colour and stripe patterns: iid noise alone gives near-equal features."""
    import torch

    gen = torch.Generator().manual_seed(7)
    yy = torch.linspace(0, 1, height)[:, None]
    xx = torch.linspace(0, 1, width)[None, :]
    images = []
    for i in range(batch):
        colour = torch.randn(3, 1, 1, generator=gen)
        stripes = torch.sin(2 * torch.pi * (3 + 2 * i) * (xx * (i % 2) + yy * (1 - i % 2)))
        images.append(colour + stripes + 0.5 * torch.randn(3, height, width, generator=gen))
    return torch.stack(images)


def _compare(timm_xcit, name: str, batch: int, height: int, width: int):
    import torch

    model = timm_xcit(name)
    caught = {}
    last_attn = model.cls_attn_blocks[-1].attn.attn_drop  # sees the softmaxed CLS attention
    hook = last_attn.register_forward_hook(lambda mod, args, out: caught.setdefault("attn", out))
    images = _images(batch, height, width)
    with torch.no_grad():
        ref = model.forward_features(images).numpy()
    hook.remove()
    variables = timm_to_flax({k: v.numpy() for k, v in model.state_dict().items()}, name)
    out = jax.jit(xcit(name).apply)(variables, images.numpy().transpose(0, 2, 3, 1))
    hp, wp = out["cls_attention"].shape[2:]
    assert (hp, wp) == (-(-height // model.patch_embed.patch_size),
                        -(-width // model.patch_embed.patch_size))
    assert np.abs(np.asarray(out["cls"]) - ref[:, 0]).max() <= TOL
    assert np.abs(np.asarray(out["patch_tokens"]) - ref[:, 1:]).max() <= TOL
    ref_attn = caught["attn"][:, :, 0, 1:].numpy().reshape(batch, -1, hp, wp)
    assert np.abs(np.asarray(out["cls_attention"]) - ref_attn).max() <= TOL
    # the features depend on the image, far beyond the tolerance
    assert batch == 1 or np.abs(ref[0, 0] - ref[-1, 0]).max() > 100 * TOL


@pytest.mark.parametrize("size", [(224, 224), (250, 250), (360, 363)])
def test_nano_p16_matches_timm(timm_xcit, size):
    _compare(timm_xcit, "xcit_nano_12_p16", 2, *size)


@pytest.mark.parametrize(("batch", "size"), [(2, (224, 224)), (1, (250, 250)), (1, (360, 363))])
def test_small_p8_matches_timm(timm_xcit, batch, size):
    _compare(timm_xcit, "xcit_small_12_p8", batch, *size)
