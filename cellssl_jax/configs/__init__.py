"""Training presets, installed with the package: ``--config cpu_tiny`` (or a path to a file).

Each module has ``get_config()``: ``cellssl_jax.dino.config.default_config()`` with what the
preset changes, so every preset has the same fields.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def presets() -> list[str]:
    """Names of the installed presets."""
    return sorted(p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_"))


def resolve(spec: str) -> str:
    """A preset name or a config file path -> the path to load. An existing file wins; otherwise
    ``configs/<name>.py`` (the pre-install spelling) and ``<name>`` name a preset. Unknown specs
    are returned unchanged (the loader reports them)."""
    if Path(spec).is_file():
        return spec
    name = Path(spec).name.removesuffix(".py")
    if Path(spec).parent.name in ("", "configs") and name in presets():
        return str(HERE / f"{name}.py")
    return spec
