import sys, numpy as np, warnings
warnings.filterwarnings("ignore")
from sklearn.model_selection import cross_val_predict, StratifiedKFold
from sklearn.metrics import balanced_accuracy_score, confusion_matrix
from sklearn.pipeline import make_pipeline
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from cellssl_jax.fewshot.power import YeoJohnson
from cellssl_jax.fewshot.features import load_features
f = load_features(sys.argv[1]); keep = sys.argv[2].split(",")
names = np.array(f.class_names)
idx = np.flatnonzero(np.isin(names[f.labels], keep))
y = np.searchsorted(np.array(sorted(keep)), names[f.labels[idx]])
X = f.features[idx]
B = {"xcit": slice(0, 128), "colorhist": slice(128, 224), "cellshape": slice(224, 351), "all": slice(0, 351)}
for b, s in B.items():
    m = make_pipeline(YeoJohnson(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000))
    p = cross_val_predict(m, X[:, s], y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    print(b, round(100 * balanced_accuracy_score(y, p), 1))
    if b == "all": print(sorted(keep)); print(confusion_matrix(y, p))
