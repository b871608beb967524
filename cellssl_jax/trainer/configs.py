"""Configs by preset name or file: ``load_config("cpu_tiny", {"batch_size": 8})``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import ml_collections

from cellssl_jax.configs import presets, resolve
from cellssl_jax.trainer.run import ConfigError


def load_config(spec: str, overrides: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
    """The config of preset `spec` (a name of `cellssl_jax.configs`) or of the file `spec`, with
    dotted-field `overrides` (an unknown field is an error, as on the command line)."""
    path = Path(resolve(spec))
    if not path.is_file():
        raise ConfigError(f"no config {spec!r}: neither a file nor a preset "
                          f"({', '.join(presets())})")
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config()
    for key, value in (overrides or {}).items():
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise ConfigError(f"unknown config field {key}; cellssl_jax/dino/config.py lists "
                              "them all")
        node[leaf] = value
    return config
