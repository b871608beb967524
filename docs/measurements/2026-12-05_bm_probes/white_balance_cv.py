import sys, numpy as np, warnings
warnings.filterwarnings("ignore")
from sklearn.model_selection import cross_val_predict, StratifiedKFold
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from cellssl_jax.fewshot.power import YeoJohnson
from cellssl_jax.fewshot.features import load_features
f = load_features(sys.argv[1]); extra = np.load(sys.argv[2]); keep = sys.argv[3].split(",") if len(sys.argv) > 3 else f.class_names
names = np.array(f.class_names)
idx = np.flatnonzero(np.isin(names[f.labels], keep))
y = f.labels[idx]
X = np.concatenate([f.features, extra], 1)[idx]
B = {"xcit": [slice(0, 128)], "colorhist": [slice(128, 224)], "colorhist_wb": [slice(351, 447)],
     "cellshape": [slice(224, 351)], "cellshape_wb": [slice(447, 574)],
     "all": [slice(0, 351)], "all_wb": [slice(0, 128), slice(351, 574)]}
for b, s in B.items():
    m = make_pipeline(YeoJohnson(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000))
    Xb = np.concatenate([X[:, t] for t in s], 1)
    p = cross_val_predict(m, Xb, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    print(f"{b:14s} {100 * balanced_accuracy_score(y, p):.1f}", flush=True)
