"""The lab protocol: score what a lab reads, a differential count of a folder with a real mix.

Per draw: n labelled cells per class from the labelled part (the builders' fit part), and a
query "folder" drawn from the scored part (validation or test) with a class mix: `balanced`,
`normal_blood` (the normal adult differential, by cell type), `dirichlet[:A]` (a random mix
per draw, Dirichlet(A), A default 1), `natural` (the scored part's own class mix, as a
laboratory's folder comes), or explicit `name=percent,...`. Every method sees the same draws.
Scores per draw: balanced accuracy (over the classes in the folder), macro-F1 (scikit-learn's,
over classes present or predicted) and the count error, the mean and max over
the labelled classes of |predicted % - true %| in percentage points; with intervals, also
whether each class's true percent lies inside its 95 % interval (coverage).

The folder size is `size` cells, or fewer when the scored part holds too few cells of a class
for the mix (cells are never drawn twice); the size used is recorded per draw.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed
from sklearn.metrics import balanced_accuracy_score, f1_score
from tqdm import tqdm

from cellssl_jax.fewshot.differential import Method, differential
from cellssl_jax.fewshot.features import Features
from cellssl_jax.fewshot.sampling import builder_parts, rng_for, sample_per_class
from cellssl_jax.vocab import DATASETS, SUPERCLASSES

log = logging.getLogger(__name__)

LAB_STREAM = 2  # rng stream of the lab protocol's draws (sampling.DRAW_STREAM is 1)
NORMAL_BLOOD = {  # percent by cell type: the normal-blood mix (adult reference ranges)
    "neutrophil": 55.0,
    "lymphocyte": 25.0,
    "monocyte": 6.0,
    "immature granulocyte": 4.0,
    "eosinophil": 3.0,
    "erythroblast": 3.0,
    "platelet": 3.0,
    "basophil": 1.0,
}
NAMED_MIXES = {"normal_blood": NORMAL_BLOOD}
NATURAL = "natural"  # the scored part's own class mix
DEFAULT_MIXES = ("balanced", "normal_blood", "dirichlet")
DEFAULT_N = (5, 10, 20, 50)
DEFAULT_SIZE = 800
MIN_SIZE = 50


def _plain(name: str) -> str:
    """Case, separators and a plural ignored: "Neutrophils", "neutrophil" and "NEUTROPHIL" are
    one name (laboratories name their class folders every way)."""
    words = " ".join(name.replace("_", " ").replace("-", " ").casefold().split())
    return words[:-1] if len(words) > 3 and words.endswith("s") else words


def cell_type(name: str) -> str:
    """A class name's cell type in any known vocabulary (by `_plain` name), else that name."""
    plain = _plain(name)
    for vocab in DATASETS.values():
        for code, cell in vocab.items():
            if _plain(code) == plain:
                return cell
    return plain


def _named_type(mix: dict[str, float], name: str) -> str | None:
    """The type of `mix` a class counts as: its cell type, the superclass holding it (a
    segmented neutrophil is a neutrophil), or the one type its name abbreviates ("neut",
    "Baso"); None when none."""
    cell = cell_type(name)
    if cell in mix:
        return cell
    parent = next((s for s, members in SUPERCLASSES.items() if cell in members), None)
    if parent in mix:
        return parent
    starts = [t for t in mix if len(cell) >= 3 and t.startswith(cell)]
    return starts[0] if len(starts) == 1 else None


def mix_fractions(spec: str, class_names: Sequence[str], rng: np.random.Generator | None = None,
                  natural: np.ndarray | None = None) -> np.ndarray:
    """The fraction of each class in a folder drawn with mix `spec` (see the module docstring);
    `natural`: the scored part's cells per class, which the natural mix follows. Classes a
    named mix does not list get 0 (`unmixed` names them); an error if it lists none of them."""
    k = len(class_names)
    if spec == "balanced":
        return np.full(k, 1.0 / k)
    if spec == NATURAL:
        if natural is None or len(natural) != k or np.sum(natural) <= 0:
            raise ValueError("the natural mix needs the scored part's cells per class")
        return np.asarray(natural, float) / np.sum(natural)
    if spec.startswith("dirichlet"):
        _, _, a = spec.partition(":")
        alpha = float(a) if a else 1.0
        if alpha <= 0:
            raise ValueError(f"mix {spec!r}: the Dirichlet concentration must be > 0")
        if rng is None:
            raise ValueError("a Dirichlet mix needs a random generator")
        return rng.dirichlet(np.full(k, alpha))
    if spec in NAMED_MIXES:
        mix = NAMED_MIXES[spec]
        types = [_named_type(mix, c) for c in class_names]
        # classes of one type (band and segmented neutrophils) share its percent equally
        weights = np.array([mix[t] / types.count(t) if t else 0.0 for t in types])
    elif "=" in spec:
        given: dict[str, float] = {}
        for item in spec.split(","):
            name, _, value = item.partition("=")
            if name.strip() not in class_names:
                raise ValueError(f"mix {spec!r}: {name.strip()!r} is not a class "
                                 f"({', '.join(class_names)})")
            given[name.strip()] = float(value)
        weights = np.array([given.get(c, 0.0) for c in class_names])
    else:
        raise ValueError(f"unknown mix {spec!r}: balanced, {', '.join(NAMED_MIXES)}, "
                         f"{NATURAL}, dirichlet[:A] or name=percent,...")
    if (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"mix {spec!r} gives no cells to any class of {list(class_names)}")
    return weights / weights.sum()


def unmixed(spec: str, class_names: Sequence[str]) -> list[str]:
    """The classes a named mix gives no cells (said in the report: a name it did not
    recognise reads as a type absent from the folder)."""
    if spec not in NAMED_MIXES:
        return []
    return [c for c in class_names if _named_type(NAMED_MIXES[spec], c) is None]


def lab_parts(labelled: Features, part: str, classes: Sequence[str] | None = None
              ) -> tuple[Features, Features]:
    """The builders' fit part (the labels) and `part` (the folders) of labelled cells; with
    `classes`, only those. Parts are cut on every class first, so a cell's part does not
    depend on which classes a laboratory labels."""
    which = builder_parts(labelled.paths, labelled.labels, labelled.class_names)
    fit, scored = (labelled.subset(np.flatnonzero(which == p)) for p in ("fit", part))
    if classes:
        return fit.only_classes(classes), scored.only_classes(classes)
    return fit, scored


def draw_folder(labels: np.ndarray, fractions: np.ndarray, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a folder of about `size` cells with the class `fractions`, without
    repeats (smaller when a class has too few cells; at least one cell of a class > 0)."""
    available = np.bincount(labels, minlength=len(fractions))
    want = fractions > 0
    fit = np.min(available[want] / fractions[want])
    size = int(min(size, np.floor(fit)))
    if size < 1:
        raise ValueError("the scored part has no cells of a class the mix asks for")
    counts = np.floor(fractions * size + 0.5).astype(int)
    counts = np.minimum(np.maximum(counts, want.astype(int)), available)
    picks = [rng.choice(np.flatnonzero(labels == c), size=m, replace=False)
             for c, m in enumerate(counts) if m > 0]
    return np.sort(np.concatenate(picks))


def count_error(y_true: np.ndarray, percent: np.ndarray) -> tuple[float, float]:
    """(mean, max) over classes of |percent - true percent| in points, over all C classes."""
    k = len(percent)
    truth = 100.0 * np.bincount(y_true, minlength=k) / len(y_true)
    err = np.abs(np.asarray(percent) - truth)
    return float(err.mean()), float(err.max())


def score(y_true: np.ndarray, predicted: np.ndarray, percent: np.ndarray) -> dict[str, float]:
    """Balanced accuracy, macro-F1 and count error (mean, max) of one folder."""
    mean, worst = count_error(y_true, percent)
    with warnings.catch_warnings():  # a class predicted but absent is left out, as documented
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        bacc = float(balanced_accuracy_score(y_true, predicted))
    return {
        "balanced_accuracy": bacc,
        "macro_f1": float(f1_score(y_true, predicted, average="macro", zero_division=0)),
        "count_error_mean": mean,
        "count_error_max": worst,
    }


@dataclass
class LabEvaluation:
    """Every (method, n, mix, draw) row of a lab protocol run, and what it ran on."""

    class_names: list[str]
    rows: list[dict]
    methods: list[str]
    n_values: list[int]
    mixes: list[str]
    repeats: int
    seed: int
    size: int
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)

    def summary(self) -> list[dict]:
        """Mean and standard deviation over draws per (method, n, mix)."""
        keys = ("balanced_accuracy", "macro_f1", "count_error_mean", "count_error_max",
                "coverage", "interval_width")
        out = []
        for method in self.methods:
            for n in self.n_values:
                for mix in self.mixes:
                    rows = [r for r in self.rows
                            if r["method"] == method and r["n"] == n and r["mix"] == mix]
                    if not rows:
                        continue
                    entry = {"method": method, "n": n, "mix": mix, "draws": len(rows),
                             "folder_cells": float(np.mean([r["folder_cells"] for r in rows]))}
                    for key in keys:
                        values = np.array([r[key] for r in rows if key in r], dtype=float)
                        if values.size:
                            entry[key] = float(values.mean())
                            entry[key + "_std"] = float(values.std())
                    out.append(entry)
        return out


def _one_draw(x_lab: np.ndarray, y_lab: np.ndarray, x_query: np.ndarray, y_query: np.ndarray,
              class_names: list[str], methods: Sequence[str], n: int, mix: str, rep: int,
              seed: int, size: int, intervals: bool) -> list[dict]:
    rng = rng_for(seed, LAB_STREAM, n, rep)
    lab = sample_per_class(y_lab, n, rng)
    natural = np.bincount(y_query, minlength=len(class_names))
    fractions = mix_fractions(mix, class_names, rng, natural)
    folder = draw_folder(y_query, fractions, size, rng)
    truth = y_query[folder]
    true_pct = 100.0 * np.bincount(truth, minlength=len(class_names)) / len(truth)
    rows = []
    for method in methods:
        result = differential(x_lab[lab], y_lab[lab], x_query[folder], class_names, method,
                              interval=intervals, seed=rep)
        row = {"method": method, "n": n, "mix": mix, "draw": rep,
               "folder_cells": len(folder), **score(truth, result.predicted, result.percent)}
        if intervals:
            inside = (result.low <= true_pct + 1e-9) & (true_pct <= result.high + 1e-9)
            row["coverage"] = float(inside.mean())
            row["interval_width"] = float((result.high - result.low).mean())
        rows.append(row)
    return rows


def lab_protocol(
    labelled: Features,
    query: Features,
    methods: Sequence[str],
    n_values: Sequence[int] = DEFAULT_N,
    mixes: Sequence[str] = DEFAULT_MIXES,
    repeats: int = 10,
    seed: int = 0,
    size: int = DEFAULT_SIZE,
    intervals: bool = False,
    jobs: int = 1,
) -> LabEvaluation:
    """Score every method on the same draws: n labelled cells per class from `labelled`, a
    folder of `size` cells with each mix from `query` (classes matched by name)."""
    for m in methods:
        Method.parse(m)
    if repeats < 1 or any(n < 1 for n in n_values) or size < MIN_SIZE:
        raise ValueError(f"repeats and n must be >= 1 and the folder size >= {MIN_SIZE}")
    missing = sorted(set(query.class_names) - set(labelled.class_names))
    if missing:
        raise ValueError(f"scored classes {missing} are not among the labelled classes")
    if labelled.dim != query.dim:
        raise ValueError(f"feature dimensions differ ({labelled.dim} vs {query.dim})")
    names = labelled.class_names
    remap = np.array([names.index(c) for c in query.class_names])
    li, qi = np.flatnonzero(labelled.labelled), np.flatnonzero(query.labelled)
    x_lab, y_lab = labelled.features[li], labelled.labels[li]
    x_query, y_query = query.features[qi], remap[query.labels[qi]]
    absent = [names[c] for c in range(len(names)) if not (y_lab == c).any()]
    if absent:
        raise ValueError(f"no labelled cells of {absent}")
    notes, natural = [], np.bincount(y_query, minlength=len(names))
    for mix in mixes:
        mix_fractions(mix, names, np.random.default_rng(0), natural)
        zero = unmixed(mix, names)
        if zero:
            notes.append(f"mix {mix} gives 0 % to {', '.join(zero)} (types it leaves out, or "
                         "names it does not know: an explicit mix can set them)")
    smallest = int(np.bincount(y_lab).min())
    if max(n_values) > smallest:
        notes.append(f"n = {max(n_values)} exceeds the smallest labelled class ({smallest}): "
                     "such a class gives all its cells")
    tasks = [(n, mix, rep) for n in n_values for mix in mixes for rep in range(repeats)]
    log.info("lab protocol: %d draws x %d methods", len(tasks), len(methods))
    results = Parallel(n_jobs=jobs, return_as="generator")(
        delayed(_one_draw)(x_lab, y_lab, x_query, y_query, names, list(methods), n, mix, rep,
                           seed, size, intervals) for n, mix, rep in tasks)
    rows = [r for batch in tqdm(results, total=len(tasks), desc="lab", unit="draw",
                                disable=None) for r in batch]
    return LabEvaluation(list(names), rows, list(methods), list(n_values), list(mixes),
                         repeats, seed, size, notes)


ROW_KEYS = ("method", "n", "mix", "draw", "folder_cells", "balanced_accuracy", "macro_f1",
            "count_error_mean", "count_error_max", "coverage", "interval_width")


def write_lab_report(ev: LabEvaluation, out: Path) -> list[Path]:
    """results.csv (every draw), summary.csv + summary.json (mean and std over draws),
    report.md (the table in percent and points) and lab.png (balanced accuracy and count error
    against n, one panel per mix) under `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    keys = [k for k in ROW_KEYS if any(k in r for r in ev.rows)]
    paths = [out / "results.csv", out / "summary.csv", out / "summary.json", out / "report.md",
             out / "lab.png"]
    with paths[0].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ev.rows)
    summary = ev.summary()
    columns = list(dict.fromkeys(k for row in summary for k in row))
    with paths[1].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(summary)
    meta = {"class_names": ev.class_names, "methods": ev.methods, "n": ev.n_values,
            "mixes": ev.mixes, "repeats": ev.repeats, "seed": ev.seed, "folder_size": ev.size,
            "notes": ev.notes, "inputs": ev.inputs, "summary": summary}
    paths[2].write_text(json.dumps(meta, indent=1))
    lines = [f"# Lab protocol: {ev.inputs.get('features_file', '')} "
             f"{ev.inputs.get('part', '')}".rstrip(), "",
             f"{ev.repeats} draws per (n, mix), folder of up to {ev.size} cells, seed "
             f"{ev.seed}; balanced accuracy and macro-F1 in %, count error in points "
             "(mean over classes, max over classes), mean +- std over draws.", "",
             "| method | n | mix | balanced accuracy | macro-F1 | count error mean | "
             "count error max | coverage |", "|---|---|---|---|---|---|---|---|"]
    for r in summary:
        cover = f"{100 * r['coverage']:.0f} %" if "coverage" in r else "-"
        lines.append(
            f"| {r['method']} | {r['n']} | {r['mix']} | {100 * r['balanced_accuracy']:.1f} +- "
            f"{100 * r['balanced_accuracy_std']:.1f} | {100 * r['macro_f1']:.1f} | "
            f"{r['count_error_mean']:.2f} +- {r['count_error_mean_std']:.2f} | "
            f"{r['count_error_max']:.1f} | {cover} |")
    lines += ["", *[f"- {note}" for note in ev.notes]]
    paths[3].write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(2, len(ev.mixes), figsize=(4 * len(ev.mixes), 6.5), squeeze=False)
    for j, mix in enumerate(ev.mixes):
        for method in ev.methods:
            rows = [r for r in summary if r["method"] == method and r["mix"] == mix]
            n = [r["n"] for r in rows]
            axes[0, j].plot(n, [100 * r["balanced_accuracy"] for r in rows], "o-", label=method)
            axes[1, j].plot(n, [r["count_error_mean"] for r in rows], "o-", label=method)
        axes[0, j].set_title(mix)
        axes[1, j].set_xlabel("labelled cells per class")
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.set_xticks(ev.n_values, [str(n) for n in ev.n_values])
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("balanced accuracy (%)")
    axes[1, 0].set_ylabel("count error, mean over classes (points)")
    axes[0, -1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[4], dpi=110)
    plt.close(fig)
    return paths
