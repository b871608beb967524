"""Shared pytest fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cellssl_jax.data import shared_data_dir


def run_on_cpu_devices(args: list[str], devices: int = 8, timeout: float = 900,
                       **kwargs) -> subprocess.CompletedProcess:
    """`python ARGS` in a fresh process with `devices` CPU devices (XLA reads the flag once, at
    start); fails the test with the output's tail unless it exits 0."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    return proc


# The tiny encoder (32 wide, one block, 4 heads); tests that need its config import it from here.
TINY_XCIT = dict(patch_size=16, embed_dim=32, depth=1, num_heads=4, eta=1.0, tokens_norm=False)


# Tests by cost (markers registered in pyproject.toml): files or single tests (node ids under
# tests/) that take seconds each on 2 cores, measured with `pytest --durations=0`.
SLOW = (
    # training runs, multi-device subprocesses
    "test_train.py",
    "test_multihost.py",
    "test_parallel.py",
    "test_bf16.py",
    "test_paper_preset.py",
    "test_dino_step.py",
    "test_demo.py::test_demo_end_to_end",
    # 10 s or more each at load 10 (2026-11-30; `make test-fast` took 9.5 min with them)
    "test_dino_augment.py::test_prepass_is_shared_by_every_view",
    "test_dino_augment.py::test_batch_views_shapes_range_and_determinism",
    "test_dino_augment.py::test_perspective_probability_is_per_view",
    "test_dino_state.py::test_teacher_is_a_copy_and_init_is_seeded",
    "test_dino_state.py::test_init_backbone_is_used_for_both_networks_and_checked",
    "test_builders.py::test_real_acevedo_counts_splits_subtypes",
    "test_builders.py::test_real_matek_bm_same_split_twice",
    "test_encoder.py::test_random_init_encoder_is_the_seeded_model_init",
    "test_encoder.py::test_round_trip_and_embed_matches_model",
    "test_cache.py::test_second_classify_with_another_classifier_does_no_encoder_forward",
    "test_cache.py::test_extract_select_and_read_size_share_the_cache_correctly",
    "test_cache.py::test_second_job_takes_the_compiled_encoder_from_the_compilation_cache",
    "test_cli.py::test_no_backend_noise_but_the_package_lines",
    "test_xcit.py::test_bfloat16_compute_keeps_float32_params",
    "test_xcit.py::test_train_mode_updates_batch_stats_and_uses_dropout_rng",
    "test_xcit.py::test_batchnorm_tracks_unbiased_variance_like_torch",
    "test_xcit.py::test_output_shapes_non_square_and_odd_sizes",
    "test_convert.py::test_infer_arch_from_shapes[xcit_large",
    "test_convert.py::test_round_trip_without_torch",
    "test_extract.py::test_extract_folder_matches_encoder_and_lists_skipped",
    "test_scripts.py::test_help",
    "test_fewshot_differential.py::test_two_labelled_cells_per_class_and_a_large_folder",
    "test_fewshot_lab.py::test_protocol_scores_every_method_on_the_same_draws",
    "test_evaluate.py::test_lab_protocol_cli_writes_its_report_and_checks_its_input",
    "test_classify.py::test_counts_carry_a_95_percent_interval_and_the_old_rule_is_one_flag_away",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark by cost: SLOW above; `parity` where timm's reference models are built; `real_data`
    where the shared real cells are read."""
    for item in items:
        if item.nodeid.removeprefix("tests/").startswith(SLOW):
            item.add_marker(pytest.mark.slow)
        if "timm_xcit" in item.fixturenames:
            item.add_marker(pytest.mark.parity)
        if "shared_data" in item.fixturenames:
            item.add_marker(pytest.mark.real_data)


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
    """The one fast stand-in for the bundled encoder: `XCiT(**TINY_XCIT).init` at PRNGKey(0)
    (what `random_init_encoder` writes, test_encoder checks), saved as `tiny.msgpack`."""
    import jax
    import jax.numpy as jnp

    from cellssl_jax.encoder import save_encoder
    from cellssl_jax.models.pixels import PAPER_MEAN, PAPER_STD
    from cellssl_jax.models.xcit import XCiT

    variables = jax.jit(XCiT(**TINY_XCIT).init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
    path = tmp_path_factory.mktemp("encoder") / "tiny.msgpack"
    return save_encoder(path, "custom", TINY_XCIT, variables, PAPER_MEAN, PAPER_STD, "test init")
