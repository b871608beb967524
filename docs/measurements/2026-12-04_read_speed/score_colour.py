import sys, numpy as np
sys.path.insert(0,'scripts/release')
from select_default import score
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts
for ds in sys.argv[1:]:
    col=load_features(f'runs/speed/{ds}/{ds}_colorhist/features.npz')
    parts=builder_parts(col.paths,col.labels,col.class_names)
    r={c:score(col,parts,{'fit'},'validation',c,20) for c in ('svm','lr')}
    print(ds,'colorhist', {c:'%.1f +- %.1f'%(100*np.mean(v),100*np.std(v)) for c,v in r.items()}, flush=True)
