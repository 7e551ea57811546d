"""Human judgements of captions, for calibrating the CLAP filter: reading them and finding their audio.

A judgement is a clip id, a caption and either a good/bad label or a 1-5 hallucination rating with a
cut-off. The audio is an ``audio`` column (a path, relative to an audio root, or an Audio feature) or
found under the audio root by clip id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_GOOD = {"good", "1", "true", "yes", "keep", "correct"}
_BAD = {"bad", "0", "false", "no", "remove", "hallucinated"}
_FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")


def _is_good(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in _GOOD:
        return True
    if text in _BAD:
        return False
    raise ValueError(f"cannot read {value!r} as a good/bad label; use one of {sorted(_GOOD | _BAD)}")


def load_judgements(
    path: str | Path, score_cutoff: float | None = None, higher_is_better: bool = False, split: str = "train"
) -> Any:
    """Human judgements as a dataset with ``id``, ``caption``, ``good`` (bool) and ``audio`` if given.

    ``path`` is a CSV, JSON(L) or Parquet file, or a dataset folder or Hub id (``split`` is read). Rows
    need ``id`` and ``caption``, and either ``label`` (good/bad, yes/no, 1/0, ...) or, with
    ``score_cutoff``, ``score``: a 1-5 hallucination rating, good when ``score <= score_cutoff`` (or
    ``>=`` with ``higher_is_better`` for quality ratings).

    Example:
        >>> _ = Path("ratings.csv").write_text("id,caption,score\\na,A dog barks.,1\\nb,A cat sings opera.,4\\n")
        >>> list(load_judgements("ratings.csv", score_cutoff=2)["good"])
        [True, False]
    """
    import datasets

    suffix = Path(path).suffix.lower()
    if suffix in _FILE_BUILDERS:
        table = datasets.load_dataset(_FILE_BUILDERS[suffix], data_files=str(path), split="train")
    else:
        table = datasets.load_dataset(str(path), split=split)
    source = "label" if score_cutoff is None else "score"
    missing = [column for column in ("id", "caption", source) if column not in table.column_names]
    if missing:
        hint = "" if score_cutoff is not None else " (or give score_cutoff to read a 'score' column)"
        raise ValueError(
            f"{path} lacks the column(s) {', '.join(missing)}{hint}; it has {', '.join(table.column_names)}"
        )
    if score_cutoff is None:
        good = [_is_good(value) for value in table["label"]]
    else:
        ratings = np.asarray(table["score"], dtype=np.float64)
        good = (ratings >= score_cutoff if higher_is_better else ratings <= score_cutoff).tolist()
    keep = [column for column in ("id", "caption", "audio") if column in table.column_names]
    table = table.select_columns(keep).cast_column("id", datasets.Value("string"))
    return table.add_column("good", good)


def load_all_judgements(
    paths: Sequence[str | Path], score_cutoff: float | None = None, higher_is_better: bool = False
) -> Any:
    """:func:`load_judgements` of several files (e.g. one per reviewer), as one table in their order.

    Columns that only some files have (``audio``) are left out of the whole table.
    """
    import datasets

    if not paths:
        raise ValueError("no judgements file given")
    tables = [load_judgements(path, score_cutoff, higher_is_better) for path in paths]
    shared = [name for name in tables[0].column_names if all(name in table.column_names for table in tables)]
    tables = [table.select_columns(shared) for table in tables]
    return datasets.concatenate_datasets([table.cast(tables[0].features) for table in tables])


def resolve_audio(judgements: Any, audio_root: str | Path | None) -> Any:
    """``judgements`` with ``audio`` paths made absolute under ``audio_root``, or found there by clip id.

    Without an ``audio`` column, the clip of id ``X`` is the first ``audio_root/X.<ext>`` for a usual
    audio suffix; a clip found nowhere gets no audio (its score is missing, with a ``decode`` error).
    """
    from datasets import Features, Value

    feature = judgements.features.get("audio")
    if feature is not None and not (
        isinstance(feature, Value) and feature.dtype in ("string", "large_string")
    ):
        return judgements  # an Audio feature: nothing to resolve
    if audio_root is None:
        if feature is None:
            raise ValueError(
                "the judgements have no 'audio' column: give audio_root to find each clip by its id"
            )
        return judgements
    root = Path(audio_root)

    def locate(row: dict[str, Any]) -> dict[str, Any]:
        if feature is not None:
            return {"audio": None if row["audio"] is None else str(root / row["audio"])}
        candidates = (root / f"{row['id']}{suffix}" for suffix in _AUDIO_SUFFIXES)
        return {"audio": next((str(path) for path in candidates if path.exists()), None)}

    features = Features({**judgements.features, "audio": Value("string")})
    return judgements.map(locate, features=features, desc="locating audio")
