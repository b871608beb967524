import sys, numpy as np, warnings
warnings.filterwarnings("ignore")
from sklearn.model_selection import cross_val_predict, StratifiedKFold
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from cellssl_jax.fewshot.power import YeoJohnson
from cellssl_jax.fewshot.features import load_features
f = load_features(sys.argv[1])
for p in sys.argv[1:]:
    X = f.features if p.endswith(".npz") else np.load(p)
    m = make_pipeline(YeoJohnson(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000))
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    a = balanced_accuracy_score(f.labels, cross_val_predict(m, X[:, 224:], f.labels, cv=cv))
    b = balanced_accuracy_score(f.labels, cross_val_predict(m, X, f.labels, cv=cv))
    print(f"{p:36s} cellshape {100*a:.1f}  all {100*b:.1f}", flush=True)
