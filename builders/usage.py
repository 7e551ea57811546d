"""What ``fusion-datasets build NAME --help`` says of a builder, read off the builder itself.

Its one-line summary is its module docstring's first line; its description, the docstrings of the builder
and of the kinds of builder it is (a classification benchmark, a QA benchmark, a source), then the metadata
files it reads by split with the columns their header must name. Its options are its config's fields
(:meth:`~fusion_datasets.builders.base.FusionBuilder.options`).

Example:
    >>> from fusion_datasets.builders import BUILDERS
    >>> summary(BUILDERS["esc50"])
    'ESC-50: 2,000 environmental clips in 50 classes (`meta/esc50.csv`, `audio/`).'
"""

from __future__ import annotations

import inspect
import re

from fusion_datasets.builders.base import FusionBuilder


def _plain(docstring: str) -> str:
    """A docstring's paragraph as terminal text: one line, ``code`` as `code`, :role:`name` as name."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", docstring).replace("``", "`")
    return " ".join(text.split())


def summary(builder: type[FusionBuilder]) -> str:
    """The first line of the builder's module docstring (what the dataset is)."""
    return _plain((inspect.getmodule(builder).__doc__ or builder.NAME).strip().split("\n\n")[0])


def _metadata(builder: type[FusionBuilder]) -> str | None:
    if not builder.METADATA:
        return None
    files = "; ".join(f"{split}: {path}" for split, path in builder.METADATA.items())
    header = f" (its header names {', '.join(builder.COLUMNS)})" if builder.COLUMNS else ""
    return f"Metadata under --data-dir, by split: {files}{header}."


def description(builder: type[FusionBuilder]) -> str:
    """Paragraphs: the summary, the docstrings from the builder's own to its kind's, the metadata files."""
    kinds = [kind for kind in builder.__mro__ if issubclass(kind, FusionBuilder) and kind is not FusionBuilder]
    docstrings = [_plain(kind.__doc__) for kind in kinds if "__doc__" in vars(kind) and kind.__doc__]
    return "\n\n".join(filter(None, [summary(builder), *docstrings, _metadata(builder)]))
