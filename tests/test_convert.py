"""Checkpoint conversion: the four PyTorch layouts, .safetensors, arch inference, clear errors."""

from __future__ import annotations

import argparse

import jax
import numpy as np
import pytest
from flax import traverse_util

from cellssl_jax.convert import convert_state, main
from cellssl_jax.encoder import load_encoder
from cellssl_jax.models.timm_mapping import (
    ConversionError,
    abstract_variables,
    flax_to_timm,
    infer_arch,
    timm_to_flax,
)
from cellssl_jax.models.xcit import XCIT_VARIANTS, xcit

ARCH = "xcit_nano_12_p16"


def _flat(tree):
    return traverse_util.flatten_dict(tree)


def _assert_same(a, b):
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=str(k))


# ---- torch-free ----------------------------------------------------------------------------


def test_round_trip_without_torch():
    rng = np.random.default_rng(0)
    shapes = _flat(abstract_variables(xcit(ARCH)))
    variables = traverse_util.unflatten_dict(
        {k: rng.standard_normal(v.shape, dtype=np.float32) for k, v in shapes.items()})
    sd = flax_to_timm(variables)
    assert sd["patch_embed.proj.6.0.weight"].shape == (128, 64, 3, 3)  # torch layouts
    assert sd["blocks.0.local_mp.conv1.weight"].shape == (128, 1, 3, 3)
    assert sd["pos_embed.token_projection.weight"].shape == (128, 64, 1, 1)
    _assert_same(timm_to_flax(sd, ARCH), variables)


@pytest.mark.parametrize("name", sorted(XCIT_VARIANTS))
def test_infer_arch_from_shapes(name):
    shapes = _flat(abstract_variables(xcit(name)))
    zeros = {k: np.broadcast_to(np.float32(0), v.shape) for k, v in shapes.items()}  # no memory
    assert infer_arch(flax_to_timm(traverse_util.unflatten_dict(zeros))) == name


def test_mismatch_lists_missing_unexpected_and_misshaped_keys():
    shapes = _flat(abstract_variables(xcit(ARCH)))
    sd = flax_to_timm(traverse_util.unflatten_dict(
        {k: np.zeros(v.shape, np.float32) for k, v in shapes.items()}))
    del sd["norm.bias"]
    sd["blocks.0.extra.weight"] = np.zeros(3, np.float32)
    sd["cls_token"] = np.zeros((1, 1, 7), np.float32)
    with pytest.raises(ConversionError) as err:
        timm_to_flax(sd, ARCH)
    msg = str(err.value)
    assert "1 missing: norm.bias" in msg
    assert "1 unexpected: blocks.0.extra.weight" in msg
    assert "1 mis-shaped: cls_token" in msg


# ---- real PyTorch files from timm models ---------------------------------------------------


@pytest.fixture(scope="module")
def timm_pair(timm_xcit):
    """Two different random timm models (teacher-like and student-like) and their state dicts."""
    models = [timm_xcit(ARCH, seed=s) for s in (0, 1)]
    sds = [{k: v.numpy() for k, v in m.state_dict().items()} for m in models]
    return models, sds


def _dino_head():
    import torch

    head = torch.nn.Sequential()
    head.mlp = torch.nn.Sequential(torch.nn.Linear(128, 32), torch.nn.GELU(),
                                   torch.nn.Linear(32, 16))
    head.last_layer = torch.nn.utils.parametrizations.weight_norm(
        torch.nn.Linear(16, 50, bias=False))
    return head.state_dict()


def _save_formats(tmp_path, models):
    """Write the same weights in every supported layout; returns {format: path}."""
    import torch
    from safetensors.torch import save_file

    teacher, student = (m.state_dict() for m in models)
    paths = {}
    paths["timm"] = tmp_path / "timm.pth"
    torch.save(teacher, paths["timm"])
    official = {}
    for k, v in teacher.items():
        k = k.replace("pos_embed.", "pos_embeder.")
        if ".attn.q." in k and k.startswith("cls_attn_blocks"):
            parts = [teacher[k.replace(".q.", f".{n}.")] for n in "qkv"]
            official[k.replace(".q.", ".qkv.")] = torch.cat(parts, 0)
        elif not (k.startswith("cls_attn_blocks") and (".attn.k." in k or ".attn.v." in k)):
            official[k] = v
    official["head.weight"] = torch.zeros(1000, 128)  # ImageNet classifier: left out
    paths["xcit-official"] = tmp_path / "xcit_official.pth"
    torch.save({"model": official, "epoch": 400}, paths["xcit-official"])
    head = _dino_head()
    dino = {
        which: {f"{prefix}backbone.{k}": v for k, v in sd.items()}
        | {f"{prefix}head.{k}": v for k, v in head.items()}
        for which, sd, prefix in (("teacher", teacher, ""), ("student", student, "module."))
    }
    dino |= {"epoch": 3, "args": argparse.Namespace(arch="xcit_nano_12_p16", lr=5e-4)}
    paths["dino-train"] = tmp_path / "checkpoint.pth"
    torch.save(dino, paths["dino-train"])
    paper = {f"backbone.{k}": v for k, v in teacher.items()}
    paper |= {f"projection_head.{k}": v for k, v in head.items()}
    paper = {k.replace("parametrizations.weight.original0", "weight_g")
              .replace("parametrizations.weight.original1", "weight_v"): v
             for k, v in paper.items()}
    paths["paper"] = tmp_path / "teacher.pt"
    torch.save(paper, paths["paper"])
    paths["paper-safetensors"] = tmp_path / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in paper.items()}, str(paths["paper-safetensors"]))
    return paths


def test_every_format_converts_to_the_same_weights(tmp_path, timm_pair):
    models, sds = timm_pair
    expected = timm_to_flax(sds[0], ARCH)
    paths = _save_formats(tmp_path, models)
    for fmt, path in paths.items():
        out = main([str(path), "--out", str(tmp_path / fmt)])
        enc = load_encoder(out)
        assert enc.arch == ARCH, fmt  # inferred from shapes
        _assert_same(jax.tree_util.tree_map(np.asarray, enc.variables), expected)
        assert enc.meta["model_config"]["tokens_norm"] is False
        paper = fmt.startswith("paper")
        np.testing.assert_allclose(enc.mean, 0.5 if paper else [0.485, 0.456, 0.406])
    logs = " ".join((tmp_path / fmt / "convert.log").read_text() for fmt in paths)
    assert "left out: epoch, head.weight" in logs  # official file: classifier reported
    # the student of a DINO checkpoint is a different network
    out = main([str(paths["dino-train"]), "--which", "student", "--out", str(tmp_path / "s")])
    _assert_same(jax.tree_util.tree_map(np.asarray, load_encoder(out).variables),
                 timm_to_flax(sds[1], ARCH))
    # the DINO head comes along, with weight-norm names unified (and only where there is one)
    assert (tmp_path / "dino-train" / "head.npz").is_file()
    assert not (tmp_path / "timm" / "head.npz").exists()
    head = np.load(tmp_path / "dino-train" / "head.npz")
    assert set(head.files) == {"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
                               "last_layer.weight_g", "last_layer.weight_v"}
    assert head["last_layer.weight_v"].shape == (50, 16)


def test_converted_encoder_matches_timm_end_to_end(tmp_path, timm_pair):
    import torch

    models, _ = timm_pair
    paths = _save_formats(tmp_path, models)
    enc = load_encoder(main([str(paths["paper"]), "--out", str(tmp_path / "p")]))
    images = np.random.default_rng(0).integers(0, 256, (2, 80, 96, 3), dtype=np.uint8)
    x = torch.from_numpy((images / 255.0 - 0.5) / 0.5).float().permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = models[0].forward_features(x)[:, 0].numpy()
    assert np.abs(enc.embed(images) - ref).max() <= 1e-4


def test_cli_errors_name_the_problem(tmp_path, timm_pair):
    models, sds = timm_pair
    with pytest.raises(SystemExit, match="checkpoint not found"):
        main([str(tmp_path / "none.pth"), "--out", str(tmp_path / "x")])
    paths = _save_formats(tmp_path, models)
    with pytest.raises(SystemExit, match="mis-shaped"):
        main([str(paths["timm"]), "--arch", "xcit_tiny_12_p16", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="no DINO head"):
        main([str(paths["timm"]), "--out", str(tmp_path / "y"), "--head_out", str(tmp_path / "h")])


def test_old_spellings_still_work_with_a_warning(tmp_path, timm_pair, capsys):
    models, _ = timm_pair
    paths = _save_formats(tmp_path, models)
    out = main([str(paths["dino-train"]), "--out", str(tmp_path / "old.msgpack"),
                "--head-out", str(tmp_path / "old_head.npz")])
    assert out == tmp_path / "old.msgpack" and load_encoder(out).arch == ARCH
    assert (tmp_path / "old_head.npz").is_file()
    err = capsys.readouterr().err
    assert "--out FILE.msgpack is deprecated" in err and "--head-out is deprecated" in err
    with pytest.raises(ConversionError, match="not an XCiT backbone"):
        convert_state({"fc.weight": np.zeros((2, 2), np.float32)})
