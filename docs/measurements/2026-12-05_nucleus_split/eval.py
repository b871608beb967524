import sys, warnings, numpy as np
warnings.filterwarnings("ignore")
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.sampling import builder_parts
from cellssl_jax.fewshot.lab import lab_protocol
ds, variants = sys.argv[1], sys.argv[2].split(",")
z = np.load(f"runs/feat4/{ds}/features.npz")
names = [str(c) for c in z["class_names"]]; paths = [str(p) for p in z["paths"]]
y = z["labels"].astype(np.int64); base = z["features"][:, :224]
which = builder_parts(paths, y, names)
for v in variants:
    cs_ = z["features"][:, 224:] if v == "shipped" else np.load(f"runs/nucleus_split/{ds}_{v}.npz")["cellshape"]
    for spec, x in (("all", np.concatenate([base, cs_], 1)), ("ch+cs", np.concatenate([base[:, -96:], cs_], 1))):
        f = Features(x.astype(np.float32), y, names, paths)
        ev = lab_protocol(f.subset(np.flatnonzero(which == "fit")), f.subset(np.flatnonzero(which == "validation")),
                          ["lr", "lr+fold+sslda+ens+gate+em"], (5, 20), ("balanced", "normal_blood"), 5, jobs=2)
        for s in ev.summary():
            print(f"{ds} {v:10s} {spec:6s} {s['method']:26s} n={s['n']:2d} {s['mix']:13s} BA {100*s['balanced_accuracy']:.1f} CE {s['count_error_mean']:.2f}", flush=True)
