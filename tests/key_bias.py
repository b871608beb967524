"""One rule for comparing two trained states that should be the same training (two parallel
drivers, one host vs several): every leaf agrees to float precision except the class-attention
key bias, which may differ within steps x lr.

Why the exception: that bias has no gradient (softmax is invariant to it), so its gradient is
the float noise of a zero, reduced in another order by each driver (or summed by gloo across
processes); AdamW normalises that noise into steps of up to lr either way. It must stay
noise-sized: bounded by steps x lr. Used by tests/test_multihost.py and by the subprocess script
of tests/test_parallel.py (which puts this folder on sys.path).
"""

from __future__ import annotations

import jax
import numpy as np


def is_key_bias(name: str) -> bool:
    """Whether a leaf (named by `jax.tree_util.keystr`) is a class-attention key bias."""
    return name.startswith(".params") and "cls_attn_blocks" in name and "['k']['bias']" in name


def named_leaves(tree) -> dict[str, np.ndarray]:
    """The leaves of `tree` as numpy arrays, by their `keystr` name, in tree order."""
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def assert_same_training(a, b, steps: int, lr: float, rtol: float = 1e-5,
                         atol: float = 1e-6) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Trees `a` and `b` agree leaf by leaf (`rtol`, `atol`), but for the class-attention key
    biases, which need only stay within `steps` x `lr` in absolute value -> the leaves compared
    to precision, by name: (a's, b's)."""
    left, right = named_leaves(a), named_leaves(b)
    assert list(left) == list(right), "the trees differ in structure"
    compared = {}
    for name, x in left.items():
        y = right[name]
        if is_key_bias(name):
            assert max(np.abs(x).max(), np.abs(y).max()) <= steps * lr, name
            continue
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=name)
        compared[name] = (x, y)
    return compared
