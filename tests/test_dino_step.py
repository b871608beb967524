"""The pmapped DINO step with augmentation: 8 devices == 1 device for one global batch; EMA, init.

(The update itself is checked against PyTorch DINO in test_dino_reference.py.)

Runs in a subprocess with 8 fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count).
"""

import textwrap

from conftest import run_on_cpu_devices

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, optax
    from cellssl_jax.models.xcit import xcit
    from cellssl_jax.models.heads import DINOHead, MultiCropModel
    from cellssl_jax.dino.augment import AugmentConfig
    from cellssl_jax.dino.optim import adaptive_grad_clip
    from cellssl_jax.dino.schedules import DinoSchedules
    from cellssl_jax.dino.state import create_train_state
    from cellssl_jax.dino.step import StepConfig, pmapped_step, replicate

    assert jax.device_count() == 8, jax.devices()
    kw = dict(embed_dim=32, depth=1, num_heads=2, bn_axis_name="batch")
    head = DINOHead(out_dim=256, hidden_dim=64, bottleneck_dim=32)
    student = MultiCropModel(xcit("xcit_nano_12_p8", **kw), head)
    teacher = MultiCropModel(xcit("xcit_nano_12_p8", **kw), head)
    sched = DinoSchedules(total_steps=10, lr=0.0, min_lr=0.0, warmup_steps=0, weight_decay=0.0,
                          weight_decay_end=0.0, momentum_teacher=0.9, teacher_temp=0.04,
                          warmup_teacher_temp=0.04, warmup_teacher_temp_steps=0,
                          freeze_last_layer_steps=1)
    # SGD: the reduction (gradients, BatchNorm statistics, centre) is what is compared here;
    # AdamW would turn float noise of zero gradients (e.g. the class-attention key bias,
    # to which softmax is invariant) into +-lr steps.
    tx = optax.chain(adaptive_grad_clip(0.32), optax.sgd(0.5))
    cfg = StepConfig(augment=AugmentConfig(global_size=16, local_size=8, n_local=1),
                     schedules=sched)
    state = create_train_state(student, tx, 0, [jnp.zeros((1, 16, 16, 3))])
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state.teacher_params)):
        np.testing.assert_array_equal(a, b)  # teacher = exact copy of the student, head too
    images = np.random.default_rng(0).integers(0, 256, (8, 20, 20, 3), dtype=np.uint8)

    def run(n):
        devices = jax.devices()[:n]
        step = pmapped_step(student=student, teacher=teacher, tx=tx, cfg=cfg, devices=devices)
        new, metrics = step(replicate(state, devices), images.reshape(n, 8 // n, 20, 20, 3))
        for leaf in jax.tree.leaves(new):  # every device holds the same state
            np.testing.assert_allclose(leaf[0], leaf[-1], rtol=1e-6, atol=1e-7)
        return jax.tree.map(lambda x: np.asarray(x[0]), (new, metrics))

    one, m1 = run(1)
    eight, m8 = run(8)
    worst = 0.0
    for path, a in jax.tree_util.tree_leaves_with_path(one):
        b = eight
        for k in path:
            b = b[k.key] if hasattr(k, "key") else getattr(b, k.name)
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6, err_msg=jax.tree_util.keystr(path))
        if a.dtype.kind == "f":
            worst = max(worst, float(np.abs(a - b).max()))
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=1e-4, err_msg=k)
    assert int(one.step) == 1
    assert np.abs(one.center).max() > 0  # the centre moved
    assert not np.allclose(one.params["backbone"]["norm"]["scale"],
                           state.params["backbone"]["norm"]["scale"])  # the student learned
    assert float(m1["params_finite"]) == 1.0
    ema = jax.tree.map(lambda t, s: 0.9 * t + 0.1 * s, state.teacher_params, one.params)
    for a, b in zip(jax.tree.leaves(ema), jax.tree.leaves(one.teacher_params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    print("OK max abs diff 1 vs 8 devices:", worst, "loss", float(m1["loss"]))
    """
)


def test_eight_devices_equal_one_device():
    assert "OK" in run_on_cpu_devices(["-c", SCRIPT]).stdout
