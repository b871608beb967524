import time, numpy as np
from cellssl_jax.fewshot.differential import differential
rng = np.random.default_rng(0)
C, D = 8, 224
means = rng.normal(0, 1.5, (C, D))
for n_lab, n_fold in ((5, 10000), (50, 10000)):
    y = np.repeat(np.arange(C), n_lab); x = means[y] + rng.normal(0, 1, (len(y), D))
    yf = rng.choice(C, n_fold, p=[.55,.25,.06,.04,.03,.03,.03,.01]); xf = means[yf] + rng.normal(0, 1, (n_fold, D))
    t = time.perf_counter(); r = differential(x, y, xf, [str(c) for c in range(C)]); dt = time.perf_counter() - t
    t = time.perf_counter(); r2 = differential(x, y, xf, [str(c) for c in range(C)], interval=False); dt2 = time.perf_counter() - t
    print(n_lab, n_fold, f"with interval {dt:.1f}s, without {dt2:.1f}s", np.round(r.low,1), np.round(r.high,1))
