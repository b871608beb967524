import sys, numpy as np
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts
from cellssl_jax.fewshot.lab import lab_protocol
path, methods = sys.argv[1], sys.argv[2].split(",")
ns = [int(v) for v in sys.argv[3].split(",")]; reps = int(sys.argv[4])
mixes = sys.argv[5].split(";") if len(sys.argv) > 5 else ["balanced", "normal_blood", "dirichlet"]
f = load_features(path); which = builder_parts(f.paths, f.labels, f.class_names)
ev = lab_protocol(f.subset(np.flatnonzero(which == "fit")), f.subset(np.flatnonzero(which == "validation")), methods, ns, mixes, reps, jobs=2)
for s in ev.summary():
    print(f"{s['method']:46s} n={s['n']:2d} {s['mix']:13s} BA {100*s['balanced_accuracy']:.1f}±{100*s['balanced_accuracy_std']:.1f}  F1 {100*s['macro_f1']:.1f}  CE {s['count_error_mean']:.2f}", flush=True)
