"""Pool cv_vs_count.py's CSVs: count error and folder balanced accuracy by the labelled cells'
cross-validated balanced accuracy, and how a warning threshold would split the draws.

    python summarise.py runs/cv_*.csv
"""
import csv
import sys

import numpy as np

rows = []
for path in sys.argv[1:]:
    with open(path) as fh:
        rows += [dict(r, file=path) for r in csv.DictReader(fh)]
cv = np.array([float(r["cv_balanced_accuracy"]) for r in rows])
err = np.array([float(r["count_error"]) for r in rows])
ba = np.array([float(r["folder_balanced_accuracy"]) for r in rows])
print(f"{len(rows)} draws from {len(sys.argv) - 1} files")
print("CV balanced accuracy | draws | count error mean (median) | folder balanced accuracy")
for lo, hi in ((0, .5), (.5, .6), (.6, .7), (.7, .8), (.8, 1.01)):
    m = (cv >= lo) & (cv < hi)
    if m.any():
        print(f"{lo:.1f}-{min(hi, 1):.1f} | {m.sum()} | {err[m].mean():.2f} ({np.median(err[m]):.2f}) "
              f"| {100 * ba[m].mean():.1f} %")
for t in (0.5, 0.6, 0.7):
    warn, bad = cv < t, err > 4
    print(f"warn below {t}: {warn.sum()} draws warned; of {bad.sum()} with count error > 4 points "
          f"{(warn & bad).sum()} warned; of {(~bad).sum()} with <= 4, {(warn & ~bad).sum()} warned")
for path in sys.argv[1:]:
    m = np.array([r["file"] == path for r in rows])
    print(f"{path}: CV {100 * cv[m].mean():.1f} %, count error {err[m].mean():.2f}, "
          f"folder balanced accuracy {100 * ba[m].mean():.1f} %")
