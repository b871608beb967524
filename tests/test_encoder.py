"""Encoder file: save/load round trip, embedding in eval mode, clear errors."""

from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_XCIT as CONFIG

from cellssl_jax.encoder import load_encoder, random_init_encoder
from cellssl_jax.models.xcit import XCiT


def _model_and_variables():
    """The tiny encoder's model and the variables its file holds (PRNGKey(0), as conftest)."""
    model = XCiT(**CONFIG)
    return model, jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))


def test_round_trip_and_embed_matches_model(tiny_encoder):
    path, (model, variables) = tiny_encoder, _model_and_variables()
    enc = load_encoder(path)
    assert enc.name == "tiny" and enc.dim == 32 and enc.arch == "custom"
    assert enc.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert enc.source == "test init"
    np.testing.assert_array_equal(enc.mean, [0.5] * 3)
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 40, 3), dtype=np.uint8)
    feats = enc.embed(images)
    assert feats.shape == (3, 32) and feats.dtype == np.float32
    ref = jax.jit(model.apply)(variables, images.astype(np.float32) / 127.5 - 1.0)["cls"]
    np.testing.assert_allclose(feats, ref, atol=1e-5)
    out = enc.forward(images)
    assert out["cls_attention"].shape == (3, 4, 3, 3)
    assert enc.embed(np.zeros((0, 48, 40, 3), np.uint8)).shape == (0, 32)


def test_bad_inputs_raise_clear_errors(tiny_encoder, tmp_path):
    enc = load_encoder(tiny_encoder)
    with pytest.raises(ValueError, match="uint8 images"):
        enc.embed(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_encoder(tmp_path / "nope.msgpack")
    junk = tmp_path / "junk.msgpack"
    junk.write_bytes(b"not msgpack at all")
    with pytest.raises(ValueError, match="not a cellssl-jax encoder"):
        load_encoder(junk)


def test_random_init_encoder_is_the_seeded_model_init(tiny_encoder, tmp_path):
    variables = load_encoder(tiny_encoder).variables  # XCiT(**CONFIG).init at PRNGKey(0)
    rand = load_encoder(random_init_encoder(tmp_path / "r.msgpack", "custom", CONFIG,
                                            mean=(0.5,) * 3, std=(0.5,) * 3, input_size=48))
    assert rand.input_size == 48 and rand.meta["model_config"] == CONFIG
    assert rand.source == "random initialisation (seed 0)"
    for a, b in zip(jax.tree.leaves(rand.variables), jax.tree.leaves(variables), strict=True):
        np.testing.assert_array_equal(a, b)
    other = load_encoder(random_init_encoder(tmp_path / "r1.msgpack", "custom", CONFIG,
                                             mean=(0.5,) * 3, std=(0.5,) * 3, seed=1))
    assert not np.array_equal(other.variables["params"]["cls_token"],
                              rand.variables["params"]["cls_token"])


def test_rewrite_meta_keeps_the_weights_byte_identical(tiny_encoder, tmp_path):
    """A crop rule added to (or removed from) a file's meta leaves its weights as they were."""
    from cellssl_jax.encoder import rewrite_meta, weights_sha256

    same = rewrite_meta(tiny_encoder, tmp_path / "same.msgpack")
    assert same.read_bytes() == tiny_encoder.read_bytes()  # no change: the very same file
    crop = {"rule": "stain", "window": 32, "margin": 0.3, "min_stain": 40}
    cropped = rewrite_meta(tiny_encoder, tmp_path / "c.msgpack", input_size=48, crop=crop)
    assert cropped.read_bytes() != tiny_encoder.read_bytes()
    assert weights_sha256(cropped) == weights_sha256(tiny_encoder)
    enc = load_encoder(cropped)
    assert enc.crop == crop and enc.input_size == 48
    for a, b in zip(jax.tree.leaves(enc.variables),
                    jax.tree.leaves(load_encoder(tiny_encoder).variables), strict=True):
        np.testing.assert_array_equal(a, b)
    back = rewrite_meta(cropped, tmp_path / "back.msgpack", crop=None, input_size=None)
    assert load_encoder(back).crop is None
    with pytest.raises(ValueError, match="needs an input_size"):
        rewrite_meta(cropped, tmp_path / "bad.msgpack", input_size=None)


def test_save_encoder_records_the_crop_rule(tmp_path):
    from cellssl_jax.encoder import save_encoder

    _, variables = _model_and_variables()
    crop = {"rule": "stain", "window": 32}
    enc = load_encoder(save_encoder(tmp_path / "e.msgpack", "custom", CONFIG, variables,
                                    (0.5,) * 3, (0.5,) * 3, "test", input_size=48, crop=crop))
    assert enc.crop == crop
    with pytest.raises(ValueError, match="needs an input_size"):
        save_encoder(tmp_path / "f.msgpack", "custom", CONFIG, variables, (0.5,) * 3,
                     (0.5,) * 3, "test", crop=crop)
