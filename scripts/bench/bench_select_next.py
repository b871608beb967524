"""How many labels until 95 % of the 50-per-class accuracy: select's next-batch rule vs random
picks vs today's select (k-means only), with a simulated labeller.

A labelled features file is split by the builders' rule (`builder_parts`): the labeller labels
cells of the fit part (the pool) in rounds of --round cells, the oracle gives their true classes,
and after each round the paper-code pipeline (--eval, default LR) fitted on the labels made so
far is scored on the held-out --parts (validation to choose parameters, test to report once),
balanced accuracy (a class never labelled scores 0 for its cells). Strategies:
- random: --round random pool cells per round;
- kmeans: today's `select` run with budget = labels so far (k-means, nearest cell to each centre;
  not incremental: what a lab gets by asking select for that many cells);
- next: `fewshot.acquire.next_batch` given the labels so far (first round = kmeans).
The reference: the same pipeline on 50 random pool cells per class (--seeds draws); the target is
95 % of its mean. Reported per strategy: labels at which a run first reaches the target, mean over
seeds (runs that never reach it within --max_labels are counted as missing and said so).

    python scripts/bench/bench_select_next.py --features runs/feat_pbc/features.npz \\
        --out runs/select_next_pbc --parts validation
    python scripts/bench/bench_select_next.py --features F.npz --out DIR --parts validation,test \\
        --strategies random,kmeans,next --seeds 5 --picks DIR/picks.npz
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from tqdm import tqdm

from cellssl_jax.fewshot import acquire
from cellssl_jax.fewshot.classifiers import CLASSIFIERS, pipeline
from cellssl_jax.fewshot.features import Features, load_features
from cellssl_jax.fewshot.sampling import builder_parts, rng_for, sample_per_class
from cellssl_jax.proposals import propose

STRATEGIES = ("random", "kmeans", "next")
REFERENCE_PER_CLASS = 50
TARGET = 0.95


def score(
    pool: Features, queries: dict[str, Features], chosen: np.ndarray, name: str
) -> dict[str, float]:
    """Balanced accuracy on each query part of `name` fitted (once) on the pool cells `chosen`."""
    y = pool.labels[chosen]
    model = None
    if len(np.unique(y)) >= 2:
        model = pipeline(name, "paper-code").fit(pool.features[chosen], y)
    got = {}
    for part, query in queries.items():
        # nothing to fit: every cell gets the one known class
        pred = np.full(len(query.labels), y[0]) if model is None else model.predict(query.features)
        got[part] = float(balanced_accuracy_score(query.labels, pred))
    return got


def simulate(
    strategy: str, pool: Features, rounds: list[int], seed: int, params: dict
) -> list[np.ndarray]:
    """The labelled pool cells after each round (cumulative totals `rounds`)."""
    rng = rng_for(seed, 7)
    chosen = np.zeros(0, np.int64)
    out = []
    for total in rounds:
        n = total - len(chosen)
        if strategy == "random":
            rest = np.setdiff1d(np.arange(len(pool.labels)), chosen)
            chosen = np.concatenate([chosen, rng.choice(rest, n, replace=False)])
        elif strategy == "kmeans":
            chosen = propose(pool.features, total, seed=seed)[0]
        else:
            batch = acquire.next_batch(
                pool.features, chosen, pool.labels[chosen], n, seed=seed, **params
            )
            chosen = np.concatenate([chosen, batch.index])
        out.append(chosen.copy())
    return out


def labels_to_target(rows: list[dict], target: float) -> float:
    """The first label count whose accuracy reaches `target` (NaN: never)."""
    for r in sorted(rows, key=lambda r: r["labels"]):
        if r["balanced_accuracy"] >= target:
            return float(r["labels"])
    return float("nan")


def summarise(
    rows: list[dict], reference: list[float], args: argparse.Namespace, name: str, part: str
) -> str:
    target = TARGET * float(np.mean(reference))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    lines = [
        f"# Labels to {TARGET:.0%} of the {REFERENCE_PER_CLASS}-per-class accuracy: {name}",
        "",
        f"Pool: the fit part ({args.pool_cells} cells); scored on the {part} part "
        f"({args.query_cells[part]} cells); paper-code {args.eval.upper()}; rounds of {args.round} "
        f"up to {args.max_labels} labels; seeds 0-{args.seeds - 1} (runs per strategy below); "
        f"rule parameters {args.params}.",
        "",
        f"Reference: {REFERENCE_PER_CLASS} random pool cells per class: "
        f"{100 * np.mean(reference):.1f} ± {100 * np.std(reference):.1f} % balanced accuracy; "
        f"target {100 * target:.1f} %.",
        "",
        "| strategy | labels to target, mean ± std | runs reaching it |",
        "|---|---|---|",
    ]
    for s in strategies:
        seeds = sorted({r["seed"] for r in rows if r["strategy"] == s})
        got = [labels_to_target([r for r in rows if r["strategy"] == s and r["seed"] == k],
                                target) for k in seeds]  # fmt: skip
        hit = np.array([g for g in got if np.isfinite(g)])
        mean = f"{hit.mean():.0f} ± {hit.std():.0f}" if len(hit) else "not reached"
        lines.append(f"| {s} | {mean} | {len(hit)} / {len(seeds)} |")
    marks = [t for t in (16, 32, 64, 128, 192, 256, 320, 400) if t <= args.max_labels]
    lines += [
        "",
        "Balanced accuracy (%) after each number of labels, mean ± std over seeds:",
        "",
        "| strategy | " + " | ".join(str(t) for t in marks) + " |",
        "|---" * (len(marks) + 1) + "|",
    ]
    for s in strategies:
        cells = []
        for t in marks:
            ba = [100 * r["balanced_accuracy"] for r in rows if r["strategy"] == s
                  and r["labels"] == t]  # fmt: skip
            cells.append(f"{np.mean(ba):.1f} ± {np.std(ba):.1f}" if ba else "-")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict], target: float, path: Path) -> None:
    """Mean accuracy against labels per strategy, with the target line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for s in dict.fromkeys(r["strategy"] for r in rows):
        got = [r for r in rows if r["strategy"] == s]
        xs = sorted({r["labels"] for r in got})
        ax.plot(xs, [100 * np.mean([r["balanced_accuracy"] for r in got if r["labels"] == x])
                     for x in xs], label=s)  # fmt: skip
    ax.axhline(100 * target, color="grey", ls="--", label=f"{TARGET:.0%} of 50/class")
    ax.set(xlabel="cells labelled", ylabel="balanced accuracy (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_all(
    args: argparse.Namespace, strategies: list[str], pool: Features, queries: dict[str, Features]
) -> list[dict]:
    """Simulate every strategy and seed, score every round -> rows."""
    rounds = list(range(args.round, args.max_labels + 1, args.round))
    rows = []
    jobs = [(s, k) for s in strategies for k in range(args.seeds)]
    picks = dict(np.load(args.picks)) if args.picks and args.picks.exists() else {}
    params = ",".join(f"{k}={v}" for k, v in args.params.items())
    for strategy, seed in tqdm(jobs, desc="bench_select_next"):
        key = f"{strategy}|{seed}|{args.round}|{params if strategy == 'next' else ''}"
        keys = [f"{key}|{t}" for t in rounds]
        if not all(k in picks for k in keys):
            runs = simulate(strategy, pool, rounds, seed, args.params)
            picks.update(zip(keys, runs, strict=True))
            if args.picks:
                np.savez(args.picks, **picks)
        for chosen in [picks[k] for k in keys]:
            for part, bacc in score(pool, queries, chosen, args.eval).items():
                rows.append(dict(part=part, strategy=strategy, seed=seed, labels=len(chosen),
                                 classes_labelled=len(np.unique(pool.labels[chosen])),
                                 balanced_accuracy=bacc))  # fmt: skip
        write_rows(args.out / "results.csv", rows)  # kept after every run
    return rows


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def combined(folders: list[Path]) -> list[dict]:
    """The rows of several runs' results.csv (finished or not)."""
    rows = []
    for folder in folders:
        with open(folder / "results.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                rows.append(dict(r, seed=int(r["seed"]), labels=int(r["labels"]),
                                 classes_labelled=int(r["classes_labelled"]),
                                 balanced_accuracy=float(r["balanced_accuracy"])))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=Path, required=True, help="labelled features file")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument(
        "--parts",
        default="validation",
        help="where to score, comma-separated: validation (to choose parameters), test (to "
        "report once); one fit per round serves all",
    )
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--round", type=int, default=16, help="cells labelled per round")
    parser.add_argument("--max_labels", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval", choices=CLASSIFIERS, default="lr")
    parser.add_argument("--typical_cells", type=int, default=acquire.TYPICAL_CELLS)
    parser.add_argument("--explore", type=float, default=acquire.EXPLORE)
    parser.add_argument("--short_power", type=float, default=acquire.SHORT_POWER)
    parser.add_argument("--candidates", type=int, default=acquire.CANDIDATES)
    parser.add_argument(
        "--picks",
        type=Path,
        help="npz of the cells each run labelled, reused and extended: the picks depend on the "
        "pool, not on --part, so a test run can score a validation run's picks",
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        help="instead of running: summarise together the results of runs (folders) made with "
        "the same arguments but different --strategies (run side by side)",
    )
    args = parser.parse_args(argv)
    strategies = args.strategies.split(",")
    if unknown := set(strategies) - set(STRATEGIES):
        parser.error(f"unknown strategies {sorted(unknown)}; choose from {STRATEGIES}")
    parts_asked = args.parts.split(",")
    if not set(parts_asked) <= {"validation", "test"}:
        parser.error(f"--parts: choose from validation,test, got {args.parts}")
    if args.round < 1 or args.max_labels < args.round:
        parser.error("need 1 <= --round <= --max_labels")
    args.params = dict(typical_cells=args.typical_cells, explore=args.explore,
                       short_power=args.short_power, candidates=args.candidates)  # fmt: skip
    try:
        feats = load_features(args.features)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    feats = feats.subset(np.flatnonzero(feats.labelled))
    parts = builder_parts(feats.paths, feats.labels, feats.class_names)
    pool = feats.subset(np.flatnonzero(parts == "fit"))
    queries = {p: feats.subset(np.flatnonzero(parts == p)) for p in parts_asked}
    args.pool_cells = len(pool.labels)
    args.query_cells = {p: len(q.labels) for p, q in queries.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    draws = [sample_per_class(pool.labels, REFERENCE_PER_CLASS, rng_for(k, 50))
             for k in range(args.seeds)]  # fmt: skip
    reference = [score(pool, queries, d, args.eval) for d in draws]
    if args.combine:
        rows = combined(args.combine)
        write_rows(args.out / "results.csv", rows)
    else:
        rows = run_all(args, strategies, pool, queries)
    (args.out / "reference.json").write_text(json.dumps(
        dict(reference=reference, params=args.params, argv=argv or sys.argv[1:]), indent=1))
    for part in parts_asked:
        ref = [r[part] for r in reference]
        got = [r for r in rows if r["part"] == part]
        text = summarise(got, ref, args, f"{feats.encoder} features of {args.features}", part)
        (args.out / f"summary_{part}.md").write_text(text)
        figure(got, TARGET * float(np.mean(ref)), args.out / f"curves_{part}.png")
        print(text)
    print(f"wrote {args.out}/results.csv, reference.json, summary_<part>.md, curves_<part>.png")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
