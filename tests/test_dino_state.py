"""TrainState init: teacher = student copy, optional start from a pretrained backbone."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cellssl_jax.dino.state import create_train_state
from cellssl_jax.models.heads import DINOHead, MultiCropModel
from cellssl_jax.models.xcit import xcit

MODEL = MultiCropModel(xcit("xcit_nano_12_p8", embed_dim=16, depth=1, num_heads=2),
                       DINOHead(out_dim=32, hidden_dim=16, bottleneck_dim=8))
SAMPLE = [jnp.zeros((1, 16, 16, 3))]


def test_teacher_is_a_copy_and_init_is_seeded():
    a = create_train_state(MODEL, optax.sgd(0.1), 0, SAMPLE)
    b = create_train_state(MODEL, optax.sgd(0.1), 0, SAMPLE)
    c = create_train_state(MODEL, optax.sgd(0.1), 1, SAMPLE)
    for x, y, z in zip(jax.tree.leaves(a.params), jax.tree.leaves(a.teacher_params),
                       jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    assert not np.array_equal(a.params["head"]["weight_v"], c.params["head"]["weight_v"])
    assert int(a.step) == 0 and a.center.shape == (32,) and not np.any(a.center)


def test_init_backbone_is_used_for_both_networks_and_checked():
    ref = create_train_state(MODEL, optax.sgd(0.1), 5, SAMPLE)
    backbone = {"params": ref.params["backbone"], "batch_stats": ref.batch_stats["backbone"]}
    s = create_train_state(MODEL, optax.sgd(0.1), 0, SAMPLE, init_backbone=backbone)
    for x, y, z in zip(jax.tree.leaves(ref.params["backbone"]),
                       jax.tree.leaves(s.params["backbone"]),
                       jax.tree.leaves(s.teacher_params["backbone"]), strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)
    wrong = jax.tree.map(lambda x: x, backbone)
    wrong["params"]["norm"]["scale"] = jnp.ones(3)
    with pytest.raises(ValueError, match="shape"):
        create_train_state(MODEL, optax.sgd(0.1), 0, SAMPLE, init_backbone=wrong)
