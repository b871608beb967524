"""Compare the outputs of two versions (before / after a refactor) that must not differ.

    python scripts/release/compare_outputs.py BEFORE_DIR AFTER_DIR [--strip PREFIX ...]

Both folders hold the same runs (e.g. `demo --out D/demo`, `extract --out D/lab_xcit`).
Checked, for every file of BEFORE_DIR:
- features files (.npz): every array equal, the float arrays bit for bit; an `X.npz` of
  BEFORE_DIR may be `X/features.npz` in AFTER_DIR (extract's `--out` became a folder);
- summaries (.json): equal as data;
- tables (.csv) and reports (.md): equal text, but for a "Wall time" line.
Paths inside the files are compared with each run's own folder (and every `--strip` prefix,
e.g. two checkouts' roots) removed. Figures (.png) and logs are not compared (they carry
timestamps and renderer details). Exit status 0 when all match, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SKIP = {".png", ".log"}


def normalise(text: str, prefixes: list[str]) -> str:
    for prefix in prefixes:
        text = text.replace(prefix, "")
    return text


def after_file(before: Path, before_dir: Path, after_dir: Path) -> Path:
    rel = before.relative_to(before_dir)
    same = after_dir / rel
    if not same.exists() and before.suffix == ".npz":
        return after_dir / rel.with_suffix("") / "features.npz"
    return same


def compare_npz(a: Path, b: Path, pa: list[str], pb: list[str]) -> list[str]:
    problems = []
    with np.load(a, allow_pickle=False) as x, np.load(b, allow_pickle=False) as y:
        if sorted(x.files) != sorted(y.files):
            return [f"keys differ: {sorted(x.files)} vs {sorted(y.files)}"]
        for key in x.files:
            u, v = x[key], y[key]
            if u.dtype.kind == "U":
                u = np.vectorize(lambda s: normalise(s, pa), otypes=[str])(u) if u.size else u
                v = np.vectorize(lambda s: normalise(s, pb), otypes=[str])(v) if v.size else v
                same = u.shape == v.shape and (u == v).all()
            else:
                same = u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
            if not same:
                problems.append(f"array {key!r} differs ({u.dtype} {u.shape} vs {v.dtype} "
                                f"{v.shape})")
    return problems


def compare_text(a: Path, b: Path, pa: list[str], pb: list[str]) -> list[str]:
    ta, tb = normalise(a.read_text(), pa), normalise(b.read_text(), pb)
    if a.suffix == ".json":
        return [] if json.loads(ta) == json.loads(tb) else ["JSON data differ"]
    la = [line for line in ta.splitlines() if not line.startswith("Wall time")]
    lb = [line for line in tb.splitlines() if not line.startswith("Wall time")]
    if la == lb:
        return []
    pairs = zip(la, lb, strict=False)  # unequal lengths: the first extra line
    first = next((i for i, (p, q) in enumerate(pairs) if p != q), min(len(la), len(lb)))
    return [f"text differs from line {first + 1}"]


def compare(before_dir: Path, after_dir: Path, strip: list[str]) -> tuple[int, list[str]]:
    """(files compared, problems)."""
    pa = [str(before_dir.resolve()) + "/", str(before_dir) + "/", *strip]
    pb = [str(after_dir.resolve()) + "/", str(after_dir) + "/", *strip]
    problems, count = [], 0
    for before in sorted(p for p in before_dir.rglob("*") if p.is_file()):
        if before.suffix in SKIP:
            continue
        after = after_file(before, before_dir, after_dir)
        rel = before.relative_to(before_dir)
        if not after.exists():
            problems.append(f"{rel}: missing in {after_dir}")
            continue
        count += 1
        check = compare_npz if before.suffix == ".npz" else compare_text
        problems += [f"{rel}: {p}" for p in check(before, after, pa, pb)]
    return count, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--strip", action="append", default=[],
                        help="a path prefix removed from paths inside files before comparing")
    args = parser.parse_args(argv)
    count, problems = compare(args.before, args.after, args.strip)
    for problem in problems:
        print(f"DIFFERS {problem}")
    print(f"{count} files compared, {len(problems)} differences")
    return 1 if problems or not count else 0


if __name__ == "__main__":
    sys.exit(main())
