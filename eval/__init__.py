"""``evaluate`` modules, one folder each (installed as ``fusion_datasets.evaluate_modules``).

Example:
    >>> import evaluate
    >>> from fusion_datasets.evaluate_modules import module_path
    >>> metric = evaluate.load(module_path("clap_retrieval"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path


def module_path(name: str) -> str:
    """The folder of the ``evaluate`` module ``name``, for ``evaluate.load`` (works from an installed wheel)."""
    path = Path(__file__).resolve().parent / name
    if not (path / f"{name}.py").is_file():
        available = sorted(p.name for p in path.parent.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"no evaluate module {name!r}; available: {', '.join(available)}")
    return str(path)
