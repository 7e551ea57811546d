"""What file names and references say: clip ids, AudioSet start times, splits, and paths that stay inside a root.

Escapes are judged lexically, on the reference as written: a data folder whose ``audio/`` is a symlink to
another disk is the user's layout, not an escape, so links are never resolved here.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import PurePosixPath

from fusion_datasets.media_files import AUDIO_SUFFIXES, VIDEO_SUFFIXES

logger = logging.getLogger(__name__)

# The common names of downloaded AudioSet clips: <ytid>, Y<ytid>, <ytid>_<start>[_<end>] (or <start>-<end>).
_AUDIOSET_NAME = re.compile(r"^Y?([A-Za-z0-9_-]{11})(?:_(\d+(?:\.\d+)?)(?:[_-]\d+(?:\.\d+)?)?)?$")
# Words of a metadata file's name that say its split (clotho_captions_development.csv: train).
_SPLIT_WORDS = {"train": "train", "training": "train", "development": "train", "val": "validation",
                "valid": "validation", "validation": "validation", "test": "test", "eval": "test",
                "evaluation": "test"}
EVALUATION_SPLITS = ("test", "validation")


def media_stem(reference: str) -> str:
    """The file name of ``reference`` without its media suffix (AudioSet times like ``_30.000`` stay)."""
    name = PurePosixPath(reference.replace("\\", "/")).name
    suffix = PurePosixPath(name).suffix.lower()
    return name[: -len(suffix)] if suffix in AUDIO_SUFFIXES + VIDEO_SUFFIXES else name


def audioset_name(stem: str) -> tuple[str, float | None] | None:
    """``(YouTube id, start seconds or None)`` of a clip named in a common AudioSet layout, else None.

    Example:
        >>> audioset_name("Y--PJHxphWEs_30.000_40.000"), audioset_name("river_mouth3")
        (('--PJHxphWEs', 30.0), None)
    """
    match = _AUDIOSET_NAME.match(stem)
    return (match[1], float(match[2]) if match[2] else None) if match else None


def clip_key(reference: str) -> str:
    """The id a benchmark row's ``clip_id`` holds: the YouTube id of an AudioSet-named clip, else the file stem."""
    return source_key(reference)[0]


def source_key(reference: str) -> tuple[str, float | None]:
    """The clip as its source knows it: ``(YouTube id, start or None)`` for AudioSet names, else ``(stem, None)``.

    Example:
        >>> source_key("audio/Y--PJHxphWEs_30.000_40.000.wav"), source_key("Creaking pier, old.wav")
        (('--PJHxphWEs', 30.0), ('Creaking pier, old', None))
    """
    stem = media_stem(reference)
    return audioset_name(stem) or (stem, None)


def reference_parts(reference: str) -> list[str] | None:
    """The parts of ``reference`` after lexical normalization; None when it climbs out with ``..`` (or is empty).

    An absolute reference (the authors' paths in the FusionAudio JSON) keeps its parts: callers look its tails
    up under their own root. Symlinks are not followed: they are the user's layout.

    Example:
        >>> reference_parts("audio/./a/../1-100038-A-14.wav"), reference_parts("audio/../../etc/passwd")
        (['audio', '1-100038-A-14.wav'], None)
    """
    normal = posixpath.normpath(reference.replace("\\", "/"))
    parts = [part for part in PurePosixPath(normal).parts if part not in ("/", ".")]
    return None if not parts or parts[0] == ".." else parts


def split_of_file(name: str) -> str | None:
    """The split a metadata file's name says (``train.csv``: train, ``clotho_captions_evaluation.csv``: test)."""
    words = {_SPLIT_WORDS.get(word) for word in re.split(r"[^a-z]+", PurePosixPath(name).stem.lower())}
    found = words - {None}
    return found.pop() if len(found) == 1 else None
