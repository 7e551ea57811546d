"""Writing files so that no reader, rank or killed process ever sees half of one.

A file is written beside its place as ``.<name>.<pid>.tmp`` and renamed into place. The pid in the name
lets a later run remove what a dead process left (:mod:`fusion_datasets.pipeline.state`), and the Hub
publisher leaves such files out (:data:`fusion_datasets.hub.push.IGNORED`).

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_text_atomically(folder / "stats.json", "{}").read_text()
    '{}'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")  # what temporary_path names


def temporary_path(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place; returns ``path``."""
    temporary = temporary_path(path)
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    """:func:`write_bytes_atomically` for text, in UTF-8."""
    return write_bytes_atomically(path, text.encode("utf-8"))
