"""Maps between the class vocabularies of the four datasets (for direct transfer).

The vocabularies (class code -> cell type, fixed order) live in `cellssl_jax/vocab.py`.

A source class maps to the target class of the same cell type; failing that, to the target
class of its superclass (BM NGB -> Acevedo `neutrophil`); otherwise it has no target class and
its probability is masked out in direct transfer. Target classes that no source class maps to
(Acevedo `platelet`, Matek blood MYO/MOB/LYA/PMB) cannot be predicted and are not scored.
"""

from __future__ import annotations

from collections.abc import Sequence

from cellssl_jax.vocab import DATASETS, SUPERCLASSES


def vocabulary(dataset: str) -> dict[str, str]:
    """Class name -> cell type of a dataset key ("matek_bm", "matek_blood", "acevedo", "raabin")."""
    try:
        return DATASETS[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}") from None


def cell_types(dataset: str, class_names: Sequence[str]) -> list[str]:
    """Cell type of each name of a features file (matched case-insensitively to the vocabulary)."""
    vocab = {name.casefold(): cell for name, cell in vocabulary(dataset).items()}
    unknown = [c for c in class_names if c.casefold() not in vocab]
    if unknown:
        raise ValueError(
            f"class names {unknown} are not in the {dataset} vocabulary "
            f"({', '.join(vocabulary(dataset))})"
        )
    return [vocab[c.casefold()] for c in class_names]


def superclass_of(cell_type: str) -> str | None:
    """The superclass a cell type belongs to, if any."""
    return next((sup for sup, members in SUPERCLASSES.items() if cell_type in members), None)


def transfer_map(
    source: str, source_names: Sequence[str], target: str, target_names: Sequence[str]
) -> list[int | None]:
    """For each source class: index of the target class it counts as, or None (masked out)."""
    target_index = {cell: i for i, cell in enumerate(cell_types(target, target_names))}
    mapping: list[int | None] = []
    for cell in cell_types(source, source_names):
        if cell in target_index:
            mapping.append(target_index[cell])
        else:
            sup = superclass_of(cell)
            mapping.append(target_index.get(sup) if sup else None)
    return mapping


def superclass_groups(target: str, target_names: Sequence[str]) -> dict[str, list[int]]:
    """Superclasses the target splits into >= 2 of its own classes -> those class indices.

    Their sensitivity (a member counts as correct if predicted as any member) is reported
    beside the per-class values but not averaged into balanced accuracy, as in the paper.
    """
    cells = cell_types(target, target_names)
    groups = {
        sup: [i for i, cell in enumerate(cells) if cell in members]
        for sup, members in SUPERCLASSES.items()
    }
    return {sup: idx for sup, idx in groups.items() if len(idx) >= 2}
