import sys, numpy as np, warnings
warnings.filterwarnings("ignore")
from sklearn.model_selection import cross_val_predict, StratifiedKFold
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from cellssl_jax.fewshot.power import YeoJohnson
from cellssl_jax.fewshot.features import load_features
f = load_features(sys.argv[1])
for p in sys.argv[2:]:
    X = np.load(p)
    m = make_pipeline(YeoJohnson(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000))
    pr = cross_val_predict(m, X, f.labels, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    X2 = np.concatenate([X, f.features[:, 128:]], 1)
    pr2 = cross_val_predict(m, X2, f.labels, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    print(f"{p:30s} xcit {100 * balanced_accuracy_score(f.labels, pr):.1f}  all {100 * balanced_accuracy_score(f.labels, pr2):.1f}", flush=True)
