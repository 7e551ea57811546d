"""Finding media files in a folder and pairing an audio file with the video of its stem.

The pipeline's folder input (:mod:`fusion_datasets.pipeline.inputs`) and the builders find clips the
same way, through this module.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi")
WEBDATASET_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # a tar member's key and extension: up to the first dot
WEBDATASET_AUDIO = ("flac", "wav", "mp3", "ogg")  # a WebDataset sample's audio member, by extension, preferred first
_SHOWN = 5  # paths named in a warning or an error


class MediaPairs(dict[str, tuple[Path | None, Path | None]]):
    """Clips by id: ``(audio, video)``, one may be None; ``unreadable`` lists the folders that could not be read."""

    def __init__(self, pairs: Iterable[tuple[str, tuple[Path | None, Path | None]]], unreadable: Sequence[str]):
        super().__init__(pairs)
        self.unreadable = list(unreadable)


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


def shown_paths(items: Sequence[str]) -> str:
    """The first few ``items`` for a message, with ``...`` where there are more."""
    return ", ".join(items[:_SHOWN]) + (", ..." if len(items) > _SHOWN else "")


def find_files(folder: Path, exclude: Sequence[Path], suffixes: Sequence[str]) -> tuple[list[Path], list[str]]:
    """The files under ``folder`` with one of ``suffixes``, and the folders that could not be read (with why).

    Symlinked folders are followed, each real folder once (links that loop end there, a folder linked
    twice is read under its first path in sorted order). Folders under ``exclude`` are left out.
    """
    skip = [Path(os.path.realpath(path)) for path in exclude]
    seen: set[str] = set()
    files: list[Path] = []
    unreadable: list[str] = []

    def report(error: OSError) -> None:
        unreadable.append(f"{os.path.relpath(error.filename, folder)} ({error.strerror})")

    for root, folders, names in os.walk(folder, onerror=report, followlinks=True):
        real = os.path.realpath(root)
        if real in seen or _inside(Path(real), skip):
            folders.clear()
            continue
        seen.add(real)
        folders.sort()
        files += [Path(root, name) for name in names if Path(name).suffix.lower() in suffixes]
    if unreadable:
        logger.warning("%d folders under %s cannot be read and are left out: %s", len(unreadable), folder,
                       shown_paths(unreadable))
    return sorted(files), unreadable


def pair_files(folder: Path, files: Sequence[Path], unreadable: Sequence[str]) -> MediaPairs:
    """The media ``files`` (of :func:`find_files`) as clips: see :func:`pair_media`."""
    stems: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        if path.suffix.lower() in (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES):
            stems[str(path.relative_to(folder).with_suffix(""))].append(path)
    pairs: dict[str, tuple[Path | None, Path | None]] = {}
    collided: list[Path] = []
    for key, paths in stems.items():
        audio = [path for path in paths if path.suffix.lower() in AUDIO_SUFFIXES]
        video = [path for path in paths if path.suffix.lower() in VIDEO_SUFFIXES]
        if len(audio) <= 1 and len(video) <= 1:
            pairs[key] = (audio[0] if audio else None, video[0] if video else None)
            continue
        collided += paths
        for path in paths:
            pairs[str(path.relative_to(folder))] = (None, path) if path in video else (path, None)
    if collided:
        logger.warning("%d media files under %s share their name with another file of the same kind in their "
                       "folder: each is its own clip, named by its path with the suffix (%s)", len(collided),
                       folder, shown_paths([str(path.relative_to(folder)) for path in collided]))
    return MediaPairs(sorted(pairs.items()), unreadable)


def pair_media(folder: Path, exclude: Sequence[Path] = ()) -> MediaPairs:
    """Media files under ``folder`` as clips by id: ``(audio, video)``, one may be None.

    An audio file and a video of the same stem in the same folder are one clip, named by its path sans
    suffix (``sub/take1``). Where more files of one kind share a stem (``a.wav`` and ``a.flac``, ``a.wav``
    and ``a.WAV``, ``a.mp4`` and ``a.mkv``), each file is its own clip named by its path with the suffix
    (``sub/a.wav``), with a warning. Symlinked folders are followed; folders that cannot be read are
    warned about and listed in ``unreadable``; files under the ``exclude`` folders (a run's own output
    inside its input) are left out.
    """
    return pair_files(folder, *find_files(folder, exclude, (*AUDIO_SUFFIXES, *VIDEO_SUFFIXES)))
