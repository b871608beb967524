"""Parameter groups, AGC, per-tensor clipping and DINO's AdamW: hand cases and torch.optim.AdamW."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cellssl_jax.dino.optim import (
    adaptive_grad_clip,
    decay_mask,
    dino_adamw,
    last_layer_mask,
    per_tensor_clip,
)

PARAMS = {
    "backbone": {"fc": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)},
                 "norm": {"scale": jnp.ones(2)}, "conv1_bias": jnp.ones(2),
                 "temperature": jnp.ones((2, 1, 1))},
    "head": {"mlp_0": {"kernel": jnp.ones((2, 4))}, "weight_v": jnp.ones((5, 4))},
}


def test_no_decay_on_biases_and_1d():
    m = decay_mask(PARAMS)
    assert m["backbone"]["fc"]["kernel"] and m["head"]["weight_v"]
    assert not m["backbone"]["fc"]["bias"] and not m["backbone"]["norm"]["scale"]
    assert not m["backbone"]["conv1_bias"]
    assert m["backbone"]["temperature"]  # 3-D, as DINO (only biases and 1-D are exempt)


def test_last_layer_mask():
    m = last_layer_mask(PARAMS)
    assert m["head"]["weight_v"] and not m["head"]["mlp_0"]["kernel"]
    assert not m["backbone"]["fc"]["kernel"]


def test_weight_decay_with_zero_gradients():
    # lr 1, wd 0.5, zero gradients: decayed kernels move by -0.5 * p, biases and norms not at all
    # (optax.inject_hyperparams(adamw)(mask=fn) once called the mask as a schedule: -0.0 here)
    tx = dino_adamw(lambda s: jnp.float32(1.0), lambda s: jnp.float32(0.5))
    zeros = jax.tree.map(jnp.zeros_like, PARAMS)
    u, _ = tx.update(zeros, tx.init(PARAMS), PARAMS, step=jnp.int32(0))
    np.testing.assert_array_equal(u["backbone"]["fc"]["kernel"], -0.5 * np.ones((3, 2)))
    np.testing.assert_array_equal(u["head"]["weight_v"], -0.5 * np.ones((5, 4)))
    np.testing.assert_array_equal(u["backbone"]["temperature"], -0.5 * np.ones((2, 1, 1)))
    for exempt in (u["backbone"]["fc"]["bias"], u["backbone"]["norm"]["scale"],
                   u["backbone"]["conv1_bias"]):
        np.testing.assert_array_equal(exempt, 0.0)


def test_adamw_equals_torch_with_param_groups_schedules_and_frozen_last_layer():
    """torch.optim.AdamW as main_dino.py drives it: two groups (no decay on biases / 1-D), lr and
    wd set per iteration, the last layer's grad None for the first 2 iterations."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), PARAMS)
    lrs, wds, freeze = [0.1, 0.05, 0.2, 0.1, 0.03], [0.3, 0.4, 0.5, 0.6, 0.7], 2
    tx = dino_adamw(lambda s: jnp.asarray(lrs)[s], lambda s: jnp.asarray(wds)[s],
                    freeze_last_layer_steps=freeze)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [jax.tree_util.keystr(p) for p, _ in leaves]
    tp = [torch.tensor(np.asarray(x), requires_grad=True) for _, x in leaves]
    decayed = jax.tree.leaves(decay_mask(params))
    last = jax.tree.leaves(last_layer_mask(params))
    opt = torch.optim.AdamW(
        [{"params": [p for p, d in zip(tp, decayed, strict=True) if d]},
         {"params": [p for p, d in zip(tp, decayed, strict=True) if not d], "weight_decay": 0.0}],
        betas=(0.9, 0.999), eps=1e-8)
    state = tx.init(params)
    for it in range(len(lrs)):
        grads = [rng.normal(size=x.shape).astype(np.float32) for _, x in leaves]
        for i, g in enumerate(opt.param_groups):
            g["lr"] = lrs[it]
            if i == 0:
                g["weight_decay"] = wds[it]
        for p, g, is_last in zip(tp, grads, last, strict=True):
            p.grad = None if (is_last and it < freeze) else torch.tensor(g)
        opt.step()
        u, state = tx.update(jax.tree.unflatten(treedef, [jnp.asarray(g) for g in grads]),
                             state, params, step=jnp.int32(it))
        params = jax.tree.map(lambda p, d: p + d, params, u)
        for name, a, b in zip(names, jax.tree.leaves(params), tp, strict=True):
            np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-6, atol=1e-6,
                                       err_msg=f"iteration {it} {name}")
    counts = jax.tree.leaves(state.count)
    assert [int(c) for c, is_last in zip(counts, last, strict=True) if is_last] == [3]


def test_agc_per_output_unit():
    # Flax kernel (in=2, out=2): unit = column. Column 0 |w| = 5, column 1 |w| = 1.
    p = {"k": jnp.array([[3.0, 0.0], [4.0, 1.0]])}
    g = {"k": jnp.array([[10.0, 0.1], [0.0, 0.0]])}
    out, _ = adaptive_grad_clip(0.32).update(g, None, p)
    # column 0: |g| = 10 > 0.32 * 5 = 1.6 -> scaled to norm 1.6; column 1: 0.1 < 0.32 kept
    np.testing.assert_allclose(out["k"][:, 0], [1.6, 0.0], rtol=1e-5)
    np.testing.assert_allclose(out["k"][:, 1], [0.1, 0.0], rtol=1e-6)


def test_agc_out_first_prototypes():
    # weight_v is (out, in): unit = row
    p = {"weight_v": jnp.array([[3.0, 4.0], [1.0, 0.0]])}
    g = {"weight_v": jnp.array([[0.0, 10.0], [0.1, 0.0]])}
    out, _ = adaptive_grad_clip(0.32).update(g, None, p)
    np.testing.assert_allclose(out["weight_v"], [[0.0, 1.6], [0.1, 0.0]], rtol=1e-5)


def test_per_tensor_clip():
    g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.3, 0.4])}
    out, _ = per_tensor_clip(1.0).update(g, None)
    assert float(jnp.linalg.norm(out["a"])) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(out["b"], g["b"])
