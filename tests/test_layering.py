"""The import rules of docs/DESIGN.md, read from the source with `ast` (every import counts, also
one inside a function): models/ imports nothing of ours, fewshot/ reaches no JAX, data/ reaches
neither models nor dino, a job module (`python -m` entry point) imports no other job."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cellssl_jax"
JOBS = {
    f"cellssl_jax.{name}"
    for name in (
        "train", "extract", "evaluate", "classify", "select", "visualize", "demo", "convert",
        "data.prepare",
    )
}  # fmt: skip
ACCELERATOR_STACK = {"jax", "jaxlib", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets",
                     "grain"}  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@cache
def imports(module: str) -> frozenset[str]:
    """What `module` imports: our modules by full name, anything else by its top-level name."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(), str(MODULES[module]))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:  # `from pkg import module` names a module, else a symbol
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in MODULES else node.module)
    return frozenset(n if n in MODULES else n.split(".")[0] for n in found)


def reaches(module: str) -> set[str]:
    """Everything `module` imports, directly or through our other modules."""
    seen, todo = set(), [module]
    while todo:
        for name in imports(todo.pop()) - seen:
            seen.add(name)
            if name in MODULES:
                todo.append(name)
    return seen


def _under(prefix: str) -> list[str]:
    return [m for m in MODULES if m == prefix or m.startswith(prefix + ".")]


def test_the_rules_see_every_module_and_job():
    assert JOBS <= set(MODULES)
    assert "cellssl_jax.models.xcit" in MODULES and "jax" in imports("cellssl_jax.models.xcit")
    assert "cellssl_jax.models.xcit" in reaches("cellssl_jax.encoder")


def test_models_import_nothing_of_ours():
    ours = set(MODULES) - set(_under("cellssl_jax.models"))
    bad = {m: sorted(imports(m) & ours) for m in _under("cellssl_jax.models")}
    assert not {m: v for m, v in bad.items() if v}


def test_fewshot_reaches_no_jax():
    bad = {m: sorted(reaches(m) & ACCELERATOR_STACK) for m in _under("cellssl_jax.fewshot")}
    assert not {m: v for m, v in bad.items() if v}


def test_evaluate_and_the_facts_reach_no_jax():
    """`evaluate` runs where only features files and scikit-learn are (the flags it shares with
    the extracting jobs must not pull the extraction in)."""
    facts = ["cellssl_jax.vocab", "cellssl_jax.splits", "cellssl_jax.feature_kinds"]
    bad = {m: sorted(reaches(m) & ACCELERATOR_STACK) for m in ["cellssl_jax.evaluate", *facts]}
    assert not {m: v for m, v in bad.items() if v}
    assert not any(imports(m) & set(MODULES) for m in facts)


def test_data_reaches_neither_models_nor_dino():
    banned = set(_under("cellssl_jax.models")) | set(_under("cellssl_jax.dino"))
    bad = {m: sorted(reaches(m) & banned) for m in _under("cellssl_jax.data")}
    assert not {m: v for m, v in bad.items() if v}


def test_libraries_import_no_job():
    bad = {m: sorted(imports(m) & JOBS) for m in MODULES if m not in JOBS}
    assert not {m: v for m, v in bad.items() if v}


def test_jobs_import_no_other_job():
    bad = {m: sorted((imports(m) & JOBS) - {m}) for m in sorted(JOBS)}
    assert not {m: v for m, v in bad.items() if v}
