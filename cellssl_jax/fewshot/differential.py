"""The lab's differential count: labelled cells + the folder's cells -> labels, posteriors and
each class's percent with a 95 % interval. The one library entry point (`differential`) under
`classify`, the demo and the browser page; `fewshot/lab.py` scores the methods against each
other.

A method is named by its steps joined by "+" (any order in the name; they run in this order):
  l2               centre every cell on the labelled classes' mean (the mean of the class
                   means, so it does not move with the folder's mix) and L2-normalise it;
  fold             fit the PowerTransformer -> PCA on labelled + folder cells (unsupervised,
                   so the transform sees the folder's spread, not only a few dozen cells);
  <classifier>     svm | lr | knn: the paper-code pipeline (PowerTransformer -> PCA ->
                   classifier, class_weight="balanced"), fitted on the labelled cells
                   (`classifiers.py`; the SVM's posteriors calibrated by Platt scaling);
  self             self-training: refit the classifier with the folder cells it is surest of,
                   the same number per class (so the labels' balance is kept), SELF_ROUNDS
                   rounds, each adding as many cells per class as were labelled;
  sslda            replace the classifier's posteriors by a semi-supervised LDA fitted by EM on
                   labelled + folder cells (`transduce.semi_supervised_lda`; without a prior
                   step its mixing weights are the count);
  gate             with sslda: use it only when the classifier's cross-validated balanced
                   accuracy on the labelled cells reaches SSLDA_GATE (EM on a Gaussian model
                   helps where classes form clusters, and drifts where the features barely
                   separate them: on validation it cost the BM cells 2-7 points);
  ens              with sslda: the geometric mean of the classifier's and sslda's posteriors
                   (the classifier is better with many labels, sslda with few);
  cal              temperature-scale the posteriors, the temperature fitted on the labelled
                   cells' cross-validated posteriors (lr and knn only);
  spread           label spreading over a k-NN graph of labelled + folder cells, the folder
                   cells starting from the posteriors so far (`transduce.spread`);
  rebal            after spread: divide the spread posteriors by their folder mean (the class
                   sizes spreading adopted) so labels follow balanced priors again;
  em[P]            Saerens' EM prior correction with P pseudo-cells per class (default 1), on
                   the balanced-prior posteriors (after sslda / ens / cal, before spread, whose
                   posteriors already carry the folder's class sizes);
  soften           with em: when EM's estimate is far from a balanced folder, EM again on
                   posteriors softened to the labelled cells' cross-validated balanced
                   accuracy (`quantify.softened_em_priors`): posteriors fitted on a few cells
                   are overconfident and hold EM near the labels' balance;
  acc              prior correction by the adjusted count (confusion rates of the labelled
                   cells' cross-validated predictions);
  relabel          label each cell by its posterior re-weighted to the estimated prior;
e.g. "lr", "svm" (today's rule: `LEGACY_METHOD`), "lr+l2+spread+em".

With a prior step (em, acc) the percent is the estimated prior, otherwise the share of cells
given each label. Labels stay the argmax of the balanced-prior posteriors unless `relabel`:
a balanced prior is what maximises balanced accuracy (every class's recall counts the same),
while the count needs the folder's own prior, so the two are estimated apart.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import LeaveOneOut, StratifiedKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from cellssl_jax.fewshot.classifiers import CLASSIFIERS, classifier, pipeline, preprocessor
from cellssl_jax.fewshot.quantify import (
    adjusted_count,
    confusion_rates,
    count_interval,
    em_priors,
    fit_temperature,
    refit_interval,
    reweight,
    softened_em_priors,
    temper,
)
from cellssl_jax.fewshot.transduce import semi_supervised_lda, spread

PRESET = "paper-code"
LEGACY_METHOD = "svm"  # `classify` before issue 21: the paper's SVM, classify and count
DEFAULT_METHOD = "lr+fold+sslda+ens+gate+em+soften"  # validation's choice (docs/LAB_COUNT.md)
CV_FOLDS = 5
SELF_ROUNDS = 3
SSLDA_GATE = 0.6  # cross-validated balanced accuracy below which `gate` skips sslda
SPREAD_WEIGHT = 1.0  # how much a folder cell's starting posterior counts against its neighbours
INTERVAL_LEVEL = 0.95
INTERVAL_REPLICATES = 500
REFIT_REPLICATES = 100
# validation: 1.0 covered 62-100 %, 1.5 >= 96 % on PBC, >= 88 % on BM (LAB_COUNT)
REFIT_INFLATE = 1.5
INTERVAL_METHOD = (
    "95 % interval: parametric bootstrap (500 replicates) of the adjusted count, drawing the "
    "folder's predicted counts (multinomial) and each row of the classifier's confusion rates "
    "(Dirichlet on the labelled cells' cross-validated predictions + 1/2)"
)
REFIT_INTERVAL_METHOD = (
    f"95 % interval: bootstrap ({REFIT_REPLICATES} replicates) of the EM count, each refitting "
    "the logistic regression on the labelled cells resampled within each class and re-running "
    "the method's EM step on the folder's cells resampled; the central 95 % of the replicates, "
    f"widened {REFIT_INFLATE}x around their median (chosen on validation), always holding the count"
)


def interval_method(method: str) -> str:
    """How `differential` computes the 95 % interval for `method` (for summaries)."""
    parsed = Method.parse(method)
    return REFIT_INTERVAL_METHOD if _refit_interval(parsed) else INTERVAL_METHOD


def _refit_interval(method: Method) -> bool:
    """The refit bootstrap for an EM count with logistic regression (cheap to refit); the
    parametric bootstrap of the adjusted count otherwise."""
    return method.prior == "em" and method.classifier == "lr"
_STEP = re.compile(
    r"^(svm|lr|knn|l2|fold|self|sslda|gate|ens|cal|spread|rebal|acc|relabel|soften"
    r"|em(\d+(\.\d*)?)?)$")


@dataclass(frozen=True)
class Method:
    """A parsed method name (see the module docstring)."""

    name: str
    classifier: str
    l2: bool = False
    fold: bool = False
    self_train: bool = False
    cal: bool = False
    spread: bool = False
    rebal: bool = False
    sslda: bool = False
    ens: bool = False
    gate: bool = False
    prior: str = ""  # "", "em" or "acc"
    pseudo: float = 1.0  # em's pseudo-cells per class
    soften: bool = False
    relabel: bool = False

    @classmethod
    def parse(cls, name: str) -> Method:
        steps = [s.strip() for s in name.split("+")]
        bad = [s for s in steps if not _STEP.match(s)]
        if bad or not steps or steps[0] not in CLASSIFIERS:
            raise ValueError(
                f"unknown method {name!r}: a classifier (svm, lr or knn) then any of l2, fold, "
                "self, sslda, gate, ens, cal, spread, rebal, em[P], soften, acc, relabel, joined "
                "by '+' (e.g. lr+l2+spread+em)"
            )
        priors = [s for s in steps if s == "acc" or s.startswith("em")]
        if len(priors) > 1 or len(set(steps)) != len(steps):
            raise ValueError(f"method {name!r}: each step once, at most one of em / acc")
        if "cal" in steps and steps[0] == "svm":
            raise ValueError(f"method {name!r}: cal needs lr or knn (the SVM is calibrated)")
        if ("ens" in steps or "gate" in steps) and "sslda" not in steps:
            raise ValueError(f"method {name!r}: ens and gate need sslda")
        if "soften" in steps and not any(s.startswith("em") for s in priors):
            raise ValueError(f"method {name!r}: soften needs em")
        if "relabel" in steps and not priors:
            raise ValueError(f"method {name!r}: relabel needs a prior step (em or acc)")
        prior = priors[0] if priors else ""
        return cls(
            name,
            steps[0],
            l2="l2" in steps,
            fold="fold" in steps,
            self_train="self" in steps,
            cal="cal" in steps,
            spread="spread" in steps,
            rebal="rebal" in steps,
            sslda="sslda" in steps,
            ens="ens" in steps,
            gate="gate" in steps,
            prior="em" if prior.startswith("em") else prior,
            pseudo=float(prior[2:]) if prior.startswith("em") and len(prior) > 2 else 1.0,
            soften="soften" in steps,
            relabel="relabel" in steps,
        )


@dataclass
class Differential:
    """What a lab reads for one folder: per cell a label and posteriors, per class a percent
    with its interval, and the labelled cells' cross-validated predictions."""

    method: str
    class_names: list[str]
    proba: np.ndarray  # [N, C] posteriors of the folder's cells
    percent: np.ndarray  # [C] the differential count, percent
    low: np.ndarray | None = None  # [C] lower end of the 95 % interval, percent
    high: np.ndarray | None = None
    cv_true: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cv_pred: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    cv_name: str = ""

    @property
    def predicted(self) -> np.ndarray:
        return self.proba.argmax(axis=1)

    def counts(self) -> np.ndarray:
        """Cells given each label."""
        return np.bincount(self.predicted, minlength=len(self.class_names))


def _fit_classifier(name: str, z: np.ndarray, y: np.ndarray):
    model = classifier(name, PRESET, probability="calibrated", labels=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(z, y)


def _proba(model, z: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(z), n_classes))
    out[:, model.classes_] = model.predict_proba(z)
    return out


def _centre_l2(x: np.ndarray, x_lab: np.ndarray, y_lab: np.ndarray) -> np.ndarray:
    """`x` centred on the mean of the labelled class means, each row L2-normalised."""
    centre = np.mean([x_lab[y_lab == c].mean(axis=0) for c in np.unique(y_lab)], axis=0)
    x = x - centre
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _self_train(name: str, z_lab: np.ndarray, y_lab: np.ndarray, z_fold: np.ndarray,
                proba: np.ndarray) -> np.ndarray:
    """SELF_ROUNDS rounds of refitting on the labelled cells plus, per class, the folder cells
    labelled that class with the highest posterior (round r: r x the labelled count)."""
    n_classes = proba.shape[1]
    per_class = np.bincount(y_lab, minlength=n_classes)
    for r in range(1, SELF_ROUNDS + 1):
        label = proba.argmax(axis=1)
        picks = []
        for c in range(n_classes):
            members = np.flatnonzero(label == c)
            order = members[np.argsort(-proba[members, c], kind="stable")]
            picks.append(order[: r * per_class[c]])
        chosen = np.concatenate(picks)
        model = _fit_classifier(name, np.vstack([z_lab, z_fold[chosen]]),
                                np.concatenate([y_lab, proba[chosen].argmax(axis=1)]))
        proba = _proba(model, z_fold, n_classes)
    return proba


def cross_validated(method: Method, x: np.ndarray, y: np.ndarray
                    ) -> tuple[np.ndarray, str, np.ndarray | None]:
    """The labelled cells' cross-validated predictions by the method's classifier (its
    features treatment included, no folder): stratified 5-fold, or leave-one-out when a class
    has fewer than 5 cells -> (predictions, the scheme's name, the posteriors [N, C]; None for
    the SVM, scored by its decision function: probabilities need more cells per fold)."""
    smallest = int(np.bincount(y)[np.unique(y)].min())
    if smallest >= CV_FOLDS:
        splitter, cv_name = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=0), "5-fold"
    else:
        splitter, cv_name = LeaveOneOut(), "leave-one-out"
    if method.l2:  # the centre from all labelled cells: a fixed map, no leak between folds
        x = _centre_l2(x, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = pipeline(method.classifier, PRESET)
        if method.classifier == "svm":
            return cross_val_predict(model, x, y, cv=splitter), cv_name, None
        proba = cross_val_predict(model, x, y, cv=splitter, method="predict_proba")
    classes = np.unique(y)
    return classes[proba.argmax(axis=1)], cv_name, proba


def _check(x_lab: np.ndarray, y_lab: np.ndarray, x_fold: np.ndarray, n_classes: int) -> None:
    if len(x_fold) == 0:
        raise ValueError("no folder cells to count")
    if x_lab.shape[1] != x_fold.shape[1]:
        raise ValueError(f"feature dimensions differ ({x_lab.shape[1]} vs {x_fold.shape[1]})")
    counts = np.bincount(y_lab, minlength=n_classes)
    if len(counts) > n_classes:
        raise ValueError(f"labels must be 0..{n_classes - 1}")
    small = np.flatnonzero(counts < 2)
    if small.size:
        raise ValueError(
            f"every class needs at least 2 labelled cells; too few in class(es) "
            f"{small.tolist()} ({counts[small].tolist()} cells)"
        )
    for a in (x_lab, x_fold):
        if not np.isfinite(a).all():
            raise ValueError("features contain NaN or inf")


def transformed(method: Method, x_lab: np.ndarray, y_lab: np.ndarray, x_fold: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """The labelled and folder cells as the method's classifier sees them (`l2`, then the
    PowerTransformer -> PCA fitted on the labelled cells, or on both with `fold`)."""
    if method.l2:
        x_lab, x_fold = _centre_l2(x_lab, x_lab, y_lab), _centre_l2(x_fold, x_lab, y_lab)
    pre = preprocessor(PRESET)
    if method.fold:
        pre.fit(np.vstack([x_lab, x_fold]))
        return pre.transform(x_lab), pre.transform(x_fold)
    return pre.fit_transform(x_lab), pre.transform(x_fold)


def posteriors(method: Method | str, x_lab: np.ndarray, y_lab: np.ndarray, x_fold: np.ndarray,
               n_classes: int, cv_pred: np.ndarray | None = None,
               cv_proba: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The folder cells' posteriors [N, C] under `method` (re-weighted to the estimated prior
    with `relabel`), and the estimated prior [C] (None without a prior step). `cv_pred`: the
    labelled cells' cross-validated predictions and posteriors, which `acc` and `cal` need
    (computed when not given)."""
    method = Method.parse(method) if isinstance(method, str) else method
    proba, prior, _ = _posteriors(method, x_lab, y_lab, x_fold, n_classes, cv_pred, cv_proba)
    return proba, prior


def _posteriors(method: Method, x_lab, y_lab, x_fold, n_classes, cv_pred, cv_proba):
    """`posteriors`, and the labelled and folder cells as the classifier saw them (the refit
    interval refits on those, without transforming twice)."""
    x_lab = np.asarray(x_lab, np.float64)
    x_fold = np.asarray(x_fold, np.float64)
    y_lab = np.asarray(y_lab, np.int64)
    _check(x_lab, y_lab, x_fold, n_classes)
    x_lab_raw = x_lab
    z_lab, z_fold = transformed(method, x_lab, y_lab, x_fold)
    seen = (z_lab, z_fold)
    model = _fit_classifier(method.classifier, z_lab, y_lab)
    proba = _proba(model, z_fold, n_classes)
    if method.self_train:
        proba = _self_train(method.classifier, z_lab, y_lab, z_fold, proba)
    if cv_pred is None and (method.prior == "acc" or method.gate or method.soften) or (
            method.cal and cv_proba is None):
        cv_pred, _, cv_proba = cross_validated(method, x_lab_raw, y_lab)
    # what gate and soften read: the classifier's cross-validated balanced accuracy
    cv_accuracy = balanced_accuracy_score(y_lab, cv_pred) if cv_pred is not None else None
    mixing = None
    if method.sslda and (not method.gate or cv_accuracy >= SSLDA_GATE):
        lda, mixing = semi_supervised_lda(z_lab, y_lab, z_fold, n_classes)
        if method.ens:
            both = np.sqrt(np.clip(proba, 1e-300, None) * np.clip(lda, 1e-300, None))
            lda = both / both.sum(axis=1, keepdims=True)
        proba = lda
    if method.cal:
        proba = temper(proba, fit_temperature(cv_proba, y_lab))
    inductive = proba
    if method.spread:
        y0 = np.vstack([np.eye(n_classes)[y_lab], SPREAD_WEIGHT * proba])
        z = np.vstack([z_lab, z_fold])
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        proba = spread(z, y0)[len(z_lab):]
        if method.rebal:
            proba = reweight(proba, np.full(n_classes, 1.0 / n_classes), proba.mean(axis=0))
    if not method.prior:
        return proba, mixing, seen
    if method.prior == "em" and method.soften:
        prior = softened_em_priors(inductive, cv_accuracy, pseudo=method.pseudo)
    elif method.prior == "em":
        prior, _ = em_priors(inductive, pseudo=method.pseudo)
    else:
        q = np.bincount(proba.argmax(axis=1), minlength=n_classes) / len(proba)
        prior = adjusted_count(q, confusion_rates(y_lab, cv_pred, n_classes))
    return (reweight(proba, prior) if method.relabel else proba), prior, seen


def differential(
    x_lab: np.ndarray,
    y_lab: np.ndarray,
    x_fold: np.ndarray,
    class_names: list[str],
    method: str = DEFAULT_METHOD,
    interval: bool = True,
    seed: int = 0,
) -> Differential:
    """Fit on the labelled cells (`y_lab` in 0..C-1, >= 2 per class), label the folder's cells
    and count them, with a 95 % interval per class when `interval` (`interval_method`).

    BLAS runs on one thread here: the fits are small (L-BFGS on tens to thousands of cells),
    and OpenBLAS's threads cost more than they give on them (classify's default method on 56 +
    100 PBC cells, 2 cores: 18-38 s with 2 BLAS threads, 0.85-0.9 s with one, the same
    predictions; docs/SPEED.md, start-up)."""
    with threadpool_limits(1, user_api="blas"):
        return _differential(x_lab, y_lab, x_fold, class_names, method, interval, seed)


def _differential(x_lab, y_lab, x_fold, class_names, method, interval, seed) -> Differential:
    parsed = Method.parse(method)
    n_classes = len(class_names)
    x_lab = np.asarray(x_lab, np.float64)
    y_lab = np.asarray(y_lab, np.int64)
    _check(x_lab, y_lab, np.asarray(x_fold), n_classes)
    cv_pred, cv_name, cv_proba = (cross_validated(parsed, x_lab, y_lab)
                                  if interval or parsed.prior == "acc" or parsed.cal
                                  else (None, "", None))
    proba, prior, (z_lab, z_fold) = _posteriors(parsed, x_lab, y_lab, x_fold, n_classes, cv_pred,
                                                cv_proba)
    predicted = proba.argmax(axis=1)
    share = prior if prior is not None else np.bincount(predicted, minlength=n_classes) / len(
        predicted)
    result = Differential(parsed.name, list(class_names), proba, 100.0 * share)
    if cv_pred is not None:
        result.cv_true, result.cv_pred, result.cv_name = y_lab, cv_pred, cv_name
    if interval and _refit_interval(parsed):
        low, high = refit_interval(
            z_lab, y_lab, z_fold, n_classes,
            lambda: classifier(parsed.classifier, PRESET, probability="calibrated", labels=y_lab),
            REFIT_REPLICATES, INTERVAL_LEVEL, REFIT_INFLATE, seed,
            balanced_accuracy_score(y_lab, cv_pred) if parsed.soften else None)
    elif interval:
        low, high = count_interval(predicted, y_lab, cv_pred, n_classes,
                                   INTERVAL_REPLICATES, INTERVAL_LEVEL, seed)
    if interval:
        # the interval is about the reported percent: it always contains it
        result.low = 100.0 * np.minimum(low, share)
        result.high = 100.0 * np.maximum(high, share)
    return result
