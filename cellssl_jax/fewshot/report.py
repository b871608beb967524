"""Reports of an Evaluation: results.csv, summary.json, report.md, curve.png, confusion PNGs.

Fractions (0-1) in csv/json; percentages in report.md, like the paper's tables. Standard
deviations are over repetitions (numpy's default, ddof=0).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.figure  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from cellssl_jax.fewshot.protocols import Evaluation, Run  # noqa: E402


def _groups(ev: Evaluation) -> dict[tuple[str, int], list[Run]]:
    """Runs keyed by (classifier, n), in the order they were produced."""
    out: dict[tuple[str, int], list[Run]] = {}
    for run in ev.runs:
        out.setdefault((run.classifier, run.n_per_class), []).append(run)
    return out


def summarise(ev: Evaluation) -> list[dict]:
    """One object per (classifier, n): means and stds over repetitions, mean confusion."""
    rows = []
    for (name, n), runs in _groups(ev).items():
        ba = np.array([ev.balanced_accuracy(r) for r in runs])
        sens = np.array([ev.sensitivities(r) for r in runs])
        sup = [ev.superclass_sensitivities(r) for r in runs]
        conf = np.mean([_row_normalised(r.confusion) for r in runs], axis=0)
        row = {
            "protocol": ev.protocol,
            "preset": ev.preset,
            "rule": ev.rule,
            "classifier": name,
            "n_per_class": n,
            "repeats": len(runs),
            "mean_train_cells": float(np.mean([r.n_train for r in runs])),
            "balanced_accuracy_mean": float(ba.mean()),
            "balanced_accuracy_std": float(ba.std()),
            "per_class_sensitivity_mean": _named(ev.class_names, _nanmean(sens)),
            "per_class_sensitivity_std": _named(ev.class_names, _nanstd(sens)),
            "confusion_mean": np.round(conf, 6).tolist(),
        }
        if ev.superclasses:
            values = {s: np.array([d[s] for d in sup]) for s in ev.superclasses}
            row["superclass_sensitivity_mean"] = {s: float(v.mean()) for s, v in values.items()}
            row["superclass_sensitivity_std"] = {s: float(v.std()) for s, v in values.items()}
        rows.append(row)
    return rows


def _nanmean(a: np.ndarray) -> np.ndarray:
    mask = ~np.isnan(a)
    counts = mask.sum(axis=0)
    sums = np.where(mask, a, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _nanstd(a: np.ndarray) -> np.ndarray:
    mean = _nanmean(a)
    return np.sqrt(_nanmean((a - mean) ** 2))


def _named(names: list[str], values: np.ndarray) -> dict[str, float | None]:
    return {c: (None if np.isnan(v) else float(v)) for c, v in zip(names, values, strict=True)}


def _row_normalised(conf: np.ndarray) -> np.ndarray:
    totals = conf.sum(axis=1, keepdims=True)
    return np.divide(conf, totals, out=np.zeros(conf.shape), where=totals > 0)


def write_results_csv(ev: Evaluation, path: Path) -> Path:
    """One row per classifier x n x repetition: balanced accuracy and each class's sensitivity."""
    sup_names = list(ev.superclasses)
    header = ["protocol", "preset", "classifier", "n_per_class", "repetition", "seed", "n_train"]
    header += ["balanced_accuracy"] + [f"sensitivity:{c}" for c in ev.class_names]
    header += [f"superclass_sensitivity:{s}" for s in sup_names] + ["converged"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in ev.runs:
            sup = ev.superclass_sensitivities(r)
            writer.writerow(
                [ev.protocol, ev.preset, r.classifier, r.n_per_class, r.repetition, ev.seed]
                + [r.n_train, f"{ev.balanced_accuracy(r):.6f}"]
                + [f"{v:.6f}" for v in ev.sensitivities(r)]
                + [f"{sup[s]:.6f}" for s in sup_names]
                + [int(r.converged)]
            )
    return path


def _pct(mean: float | None, std: float | None) -> str:
    return "–" if mean is None else f"{100 * mean:.1f} ± {100 * std:.1f}"


def write_report_md(ev: Evaluation, summary: list[dict], path: Path) -> Path:
    """Tables like the paper's: per-class sensitivity mean ± std, balanced accuracy last."""
    lines = [f"# {ev.protocol} evaluation", ""]
    if ev.dataset:
        lines += [f"- dataset: {ev.dataset}"]
    if ev.features:
        lines += [f"- features: {ev.features}"]
    if ev.test_cells:
        lines += [f"- cells: {ev.train_cells} labelled train cells to draw from, "
                  f"{ev.test_cells} test cells scored in every repetition"]
    lines += [f"- classifier preset: `{ev.preset}`", f"- prediction rule: {ev.rule}"]
    lines += [f"- seed: {ev.seed}"]
    lines += [f"- {k}: {v}" for k, v in ev.inputs.items()]
    lines += [f"- note: {note}" for note in ev.notes]
    lines += ["", "Sensitivity per class and balanced accuracy (%, mean ± std over repetitions)."]
    if ev.superclasses:
        lines += ["Superclass rows (*) are reported but not part of the balanced accuracy."]
    for name in dict.fromkeys(r["classifier"] for r in summary):
        rows = [r for r in summary if r["classifier"] == name]
        lines += ["", f"## {name}", ""]
        lines += ["| class | " + " | ".join(f"n={r['n_per_class']}" for r in rows) + " |"]
        lines += ["|---|" + "---|" * len(rows)]
        for c in ev.class_names:
            cells = [
                _pct(r["per_class_sensitivity_mean"][c], r["per_class_sensitivity_std"][c])
                for r in rows
            ]
            lines += [f"| {c} | " + " | ".join(cells) + " |"]
        for s in ev.superclasses:
            cells = [
                _pct(r["superclass_sensitivity_mean"][s], r["superclass_sensitivity_std"][s])
                for r in rows
            ]
            lines += [f"| {s} (*) | " + " | ".join(cells) + " |"]
        cells = [_pct(r["balanced_accuracy_mean"], r["balanced_accuracy_std"]) for r in rows]
        lines += ["| **balanced accuracy** | " + " | ".join(f"**{c}**" for c in cells) + " |"]
        lines += ["| train cells per repetition | "
                  + " | ".join(f"{r['mean_train_cells']:g}" for r in rows) + " |"]
        lines += ["| repetitions | " + " | ".join(str(r["repeats"]) for r in rows) + " |"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _title(ev: Evaluation) -> str:
    """What a figure shows: dataset and features, then protocol, preset and rule."""
    head = " - ".join(x for x in (ev.dataset, ev.features) if x) or ev.protocol
    return f"{head}\n{ev.protocol}, {ev.preset} preset, prediction: {ev.rule}"


def plot_curve(ev: Evaluation, summary: list[dict], path: Path) -> Path:
    """curve.png: see curve_figure."""
    fig = curve_figure(ev, summary)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curve_figure(ev: Evaluation, summary: list[dict]) -> matplotlib.figure.Figure:
    """Balanced accuracy vs labelled cells per class, one line per classifier (like Fig. 4),
    mean with a +/- 1 std band over the repetitions; a single size (transfer) is drawn as
    points with error bars, one column per classifier, so none hides another."""
    names = list(dict.fromkeys(r["classifier"] for r in summary))
    sizes = sorted({r["n_per_class"] for r in summary})
    repeats = max(r["repeats"] for r in summary)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    lows, highs = [], []
    for k, name in enumerate(names):
        rows = sorted(
            (r for r in summary if r["classifier"] == name), key=lambda r: r["n_per_class"]
        )
        n = np.array([r["n_per_class"] for r in rows], float)
        m = 100 * np.array([r["balanced_accuracy_mean"] for r in rows])
        s = 100 * np.array([r["balanced_accuracy_std"] for r in rows])
        lows.append((m - s).min())
        highs.append((m + s).max())
        if len(sizes) == 1:
            ax.errorbar(k, m[0], yerr=s[0], fmt="o", capsize=6, markersize=7, label=name.upper())
            ax.annotate(f"{m[0]:.1f} ± {s[0]:.1f}", (k, m[0]), xytext=(10, 0),
                        textcoords="offset points", va="center", fontsize=8)
            continue
        dodge = 1.04 ** (k - (len(names) - 1) / 2)  # side by side, not on top of each other
        line = ax.plot(n * dodge, m, marker="o", markersize=4, label=name.upper())[0]
        ax.fill_between(n * dodge, m - s, m + s, alpha=0.15, color=line.get_color())
    if len(sizes) == 1:
        ax.set_xticks(range(len(names)), [c.upper() for c in names])
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel(f"classifier, fitted on {sizes[0]} labelled cells per class")
    else:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(sizes))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FixedFormatter([str(n) for n in sizes]))
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("labelled cells per class (log scale)")
    pad = max(2.0, 0.1 * (max(highs) - min(lows)))
    ax.set_ylim(max(0.0, min(lows) - pad), min(100.0, max(highs) + pad))
    ax.set_ylabel("balanced accuracy (%)")
    ax.set_title(_title(ev), fontsize=9)
    ax.grid(True, alpha=0.3)
    what = "error bar" if len(sizes) == 1 else "band"
    ax.legend(title=f"mean; {what}: ± 1 std over {repeats} draws", title_fontsize=8,
              fontsize=8)
    fig.tight_layout()
    return fig


def whole_percent_rows(conf: np.ndarray) -> np.ndarray:
    """Row fractions as whole percents that still sum to 100 per row (largest remainders get
    the rounding), so a reader adding up a row finds 100, not 98 or 101."""
    exact = 100 * conf
    out = np.floor(exact).astype(int)
    for i, row in enumerate(exact):
        if row.sum() == 0:
            continue
        short = int(round(row.sum())) - out[i].sum()
        out[i, np.argsort(out[i] - row, kind="stable")[:short]] += 1
    return out


def plot_confusion(
    names: list[str], conf: np.ndarray, title: str, path: Path, counts: np.ndarray | None = None
) -> Path:
    """A row-normalised mean confusion matrix (rows: true class) as a heat map in percent of
    each true class, with a colour bar; `counts`: test cells per true class, shown with it."""
    size = 3.2 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(100 * conf, vmin=0, vmax=100, cmap="Blues")
    shown = whole_percent_rows(conf)
    for i, j in np.ndindex(conf.shape):
        color = "white" if conf[i, j] > 0.5 else "black"
        ax.text(j, i, f"{shown[i, j]}", ha="center", va="center", fontsize=7, color=color)
    rows = names if counts is None else [f"{c} ({n})" for c, n in zip(names, counts, strict=True)]
    ax.set_xticks(range(len(names)), names, rotation=90)
    ax.set_yticks(range(len(names)), rows)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class" + ("" if counts is None else " (test cells)"))
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("% of the true class's cells (each row sums to 100)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(ev: Evaluation, out_dir: str | Path) -> list[Path]:
    """Write every output of an evaluation under `out_dir`; returns the paths written."""
    out = Path(out_dir)
    (out / "confusion").mkdir(parents=True, exist_ok=True)
    summary = summarise(ev)
    written = [write_results_csv(ev, out / "results.csv")]
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    written += [out / "summary.json", write_report_md(ev, summary, out / "report.md")]
    written.append(plot_curve(ev, summary, out / "curve.png"))
    counts = ev.runs[0].confusion.sum(axis=1) if ev.runs else None  # same test cells in all
    head = " - ".join(x for x in (ev.dataset, ev.features) if x)
    for row in summary:
        name, n = row["classifier"], row["n_per_class"]
        title = f"{name.upper()}, n={n}/class, mean of {row['repeats']} draws ({ev.preset})"
        conf = np.array(row["confusion_mean"])
        written.append(
            plot_confusion(ev.class_names, conf, f"{head}\n{title}" if head else title,
                           out / f"confusion/{name}_n{n}.png", counts)
        )
    return written
