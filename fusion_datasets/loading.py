"""Loading what a step reads: a dataset with its audio left undecoded, and models by Hub id or folder.

Audio stays ``{"bytes", "path"}`` references that the steps decode per batch
(:class:`fusion_datasets.media.MediaBatch`), never the whole column up front. A model that cannot be
loaded (offline and not in the cache, a folder without its files) fails with one paragraph that names it
and says what to do, wherever it is loaded (:func:`loading_model`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fusion_datasets.errors import UserError
from fusion_datasets.layout import LOCAL_MODELS
from fusion_datasets.public import LOCAL

_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")  # "roberta-base", "laion/clap-htsat-unfused"


def undecoded(table: Any) -> Any:
    """``table`` (a ``datasets.Dataset``) with every ``datasets.Audio`` column cast to ``decode=False``."""
    import datasets

    for column, feature in table.features.items():
        if isinstance(feature, datasets.Audio):
            table = table.cast_column(column, datasets.Audio(decode=False))
    return table


def load_undecoded(path: str, config: str | None = None, split: str = "train") -> Any:
    """``datasets.load_dataset(path, config, split=split)`` (a folder, a file type, a Hub id), undecoded."""
    import datasets

    return undecoded(datasets.load_dataset(path, config, split=split))


def recorded_local_model(output: Path, model: str) -> str | None:
    """The folder behind ``model``, a local model's public name (``local:NAME``), as the run in the output folder
    ``output`` recorded it on this machine (:data:`~fusion_datasets.layout.LOCAL_MODELS`), if it is still there."""
    record = output / LOCAL_MODELS
    if not model.startswith(LOCAL) or not record.is_file():
        return None
    folder = json.loads(record.read_text(encoding="utf-8")).get(model)
    return folder if folder and Path(folder).exists() else None


def unloadable_model(model: str, error: BaseException) -> str:
    """The one-paragraph message of ``model`` failing to load with ``error``: which model, why, what to do.

    Example:
        >>> print(unloadable_model("local:clap", OSError("Repo id must be in the form 'namespace/repo_name'")))
        cannot load the model 'local:clap': it is how an output names a local model, not a path. Give its folder
    """
    lines = str(error).strip().splitlines()
    cause = lines[0].rstrip(".") if lines else type(error).__name__
    if model.startswith(LOCAL):
        cause, advice = "it is how an output names a local model, not a path", "Give its folder"
    elif Path(model).expanduser().exists():
        advice = "The folder must hold the model's files (config.json and its weights)"
    elif _HUB_ID.fullmatch(model):
        advice = (f"Download it while online (`hf download {model}`) or give the folder of a local copy; offline "
                  "(HF_HUB_OFFLINE=1) only models already in the Hugging Face cache load")
    else:
        cause, advice = "no such file or folder", "Give the model's folder or its Hub id"
    return f"cannot load the model {model!r}: {cause}. {advice}"


@contextmanager
def loading_model(model: str) -> Iterator[None]:
    """Inside the block, a failure to read ``model`` (an ``OSError``: not in the cache offline, not on the
    Hub, a folder without its files) becomes a :class:`UserError` naming it and saying what to do.

    Example:
        >>> with loading_model("models/missing"):
        ...     raise OSError("models/missing does not appear to have a file named config.json")
        Traceback (most recent call last):
        fusion_datasets.errors.UserError: cannot load the model 'models/missing': models/missing does not appear to
        have a file named config.json. Download it while online (`hf download models/missing`) or give the folder of
        a local copy; offline (HF_HUB_OFFLINE=1) only models already in the Hugging Face cache load
    """
    try:
        yield
    except OSError as error:
        raise UserError(unloadable_model(model, error)) from error
