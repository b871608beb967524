"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellssl_jax.data import shared_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def features_cache(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets an empty features cache of its own, never the user's."""
    root = tmp_path_factory.mktemp("features_cache")
    monkeypatch.setenv("CELLSSL_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-image folder (`cellssl_jax.data.shared_data_dir()`)."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(
            f"real data not found at {root} (set CELLSSL_SHARED_DATA to the shared/data folder)"
        )
    return root


@pytest.fixture(scope="session")
def timm_xcit():
    """Factory for random-weight timm XCiTs in eval mode, made hard to match by accident:
    BatchNorm running stats and affine, temperatures and layer scales are all randomised.
    Attention runs unfused (TIMM_FUSED_ATTN=0) so the class-attention map can be hooked."""
    os.environ["TIMM_FUSED_ATTN"] = "0"
    import timm
    import torch

    timm.layers.set_fused_attn(False)

    def make(name: str, seed: int = 0, **kwargs):
        torch.manual_seed(seed)
        model = timm.create_model(f"{name}_224", pretrained=False, num_classes=0, **kwargs)
        gen = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for module in model.modules():
                if hasattr(module, "fused_attn"):
                    module.fused_attn = False
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.normal_(0.0, 0.5, generator=gen)
                    module.running_var.uniform_(0.5, 2.0, generator=gen)
                    module.weight.normal_(1.0, 0.2, generator=gen)
                    module.bias.normal_(0.0, 0.2, generator=gen)
            for module in model.modules():  # timm's std-0.02 init makes features input-blind
                if isinstance(module, torch.nn.Linear):
                    module.weight.normal_(0.0, module.in_features**-0.5, generator=gen)
            for pname, p in model.named_parameters():
                if "temperature" in pname or "gamma" in pname:
                    p.uniform_(0.5, 1.5, generator=gen)
                elif pname.endswith("bias") or pname == "cls_token":
                    p.normal_(0.0, 0.1, generator=gen)
        return model.eval()

    return make


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A random-weight one-block XCiT-nano encoder file (fast stand-in for the bundled one)."""
    from cellssl_jax.encoder import random_init_encoder
    from cellssl_jax.models.xcit import XCIT_VARIANTS

    config = dict(XCIT_VARIANTS["xcit_nano_12_p16"], depth=1)
    path = tmp_path_factory.mktemp("encoder") / "tiny.msgpack"
    return random_init_encoder(path, "xcit_nano_12_p16", config, (0.5,) * 3, (0.5,) * 3)
