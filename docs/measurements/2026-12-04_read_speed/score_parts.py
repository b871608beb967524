import sys, json, numpy as np
from pathlib import Path
sys.path.insert(0,'scripts/release')
from select_default import score, side_by_side
from cellssl_jax.fewshot.features import load_features
from cellssl_jax.fewshot.sampling import builder_parts
ds=sys.argv[1]
col=load_features(f'runs/speed/{ds}/{ds}_colorhist/features.npz')
parts=builder_parts(col.paths,col.labels,col.class_names)
key=[str(Path(p).resolve()) for p in col.paths]
res={}
for name in sys.argv[2:]:
    f=load_features(f'runs/speed/{ds}/{ds}_{name}/features.npz')
    idx={str(Path(p).resolve()):i for i,p in enumerate(f.paths)}
    order=np.array([idx[k] for k in key])
    import dataclasses; f=dataclasses.replace(f.subset(order), paths=col.paths)
    assert (f.labels==col.labels).all()
    for lab,feats in ((name,f),(name+'+colorhist',side_by_side(f,col))):
        r={c:score(feats,parts,{'fit'},'validation',c,20) for c in ('svm','lr')}
        res[lab]={c:[float(np.mean(v)),float(np.std(v))] for c,v in r.items()}
        print(lab, {c:'%.1f +- %.1f'%(100*m,100*s) for c,(m,s) in res[lab].items()}, flush=True)
json.dump(res, open(f'runs/speed/{ds}_scores_{"_".join(sys.argv[2:])}.json','w'), indent=1)
