"""The jit + shard_map driver equals the pmap one: same parameters after K steps on 8 devices.

Runs in a subprocess with 8 fake CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count),
through ``make_parallel`` as train.py uses it, on train.py's own models, schedules and optimiser
(AGC + AdamW) for a tiny config.
"""

import textwrap
from pathlib import Path

from conftest import run_on_cpu_devices

TESTS = Path(__file__).resolve().parent  # the script imports tests/key_bias.py from here

SCRIPT = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(
    """
    import jax, numpy as np
    from key_bias import assert_same_training, named_leaves
    from cellssl_jax.dino.config import default_config
    from cellssl_jax.dino.step import StepConfig, make_parallel
    from cellssl_jax.trainer import (augment_config, backbone_config, build_models, init_state,
                                     make_schedules, make_tx)

    assert jax.device_count() == 8, jax.devices()
    c = default_config()
    c.model.arch, c.model.embed_dim, c.model.depth, c.model.num_heads = "xcit_nano_12_p8", 32, 1, 2
    c.head.out_dim, c.head.hidden_dim, c.head.bottleneck_dim = 256, 64, 32
    c.augment.global_size, c.augment.local_size, c.augment.n_local = 16, 8, 1
    c.batch_size = 16
    K = 3
    student, teacher = build_models(c, backbone_config(c))
    sched = make_schedules(c, steps_per_epoch=2, total_steps=10)
    tx = make_tx(c, sched)
    cfg = StepConfig(augment=augment_config(c), schedules=sched)
    state = init_state(c, student, tx)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (8, 2, 20, 20, 3), dtype=np.uint8) for _ in range(K)]

    def run(kind):
        par = make_parallel(kind, student=student, teacher=teacher, tx=tx, cfg=cfg)
        s, losses = par.put_state(state), []
        for images in batches:
            s, m = par.step(s, par.put_batch(images))
            losses.append(float(np.asarray(m["loss"]).reshape(-1)[0]))
        return par.get_state(s), losses

    p_state, p_loss = run("pmap")
    s_state, s_loss = run("shard_map")
    assert int(p_state.step) == int(s_state.step) == K
    np.testing.assert_allclose(p_loss, s_loss, rtol=1e-6)
    # every leaf agrees but the class-attention key bias, within K x lr (tests/key_bias.py)
    lr = c.optim.lr * c.batch_size / 256
    compared = assert_same_training(p_state, s_state, K, lr)
    initial = named_leaves(state)
    worst, moved = 0.0, 0
    for name, (a, b) in compared.items():
        if a.dtype.kind == "f":
            worst = max(worst, float(np.abs(a - b).max()))
            moved += int(not np.array_equal(a, initial[name]))
    assert moved > 10, moved  # the steps trained: parameters, teacher, stats, centre moved
    print("OK max abs diff pmap vs shard_map:", worst, "losses", p_loss)
    """
)


def test_shard_map_equals_pmap_on_eight_devices():
    assert "OK" in run_on_cpu_devices(["-c", SCRIPT], timeout=600).stdout
