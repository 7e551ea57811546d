"""A run's output folder in the Hub dataset layout: ``data/<config>/*.parquet``, declared in ``README.md``.

Here so that what reads an output (training, the card) need not import the pipeline that writes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CONFIGS = ("cues", "captions", "qa")
MANIFEST = "manifest.json"  # the run state: input, plan (each step's own description), parts
# each local model's public name (`local:NAME`) -> its folder on the machine that ran; never uploaded (.cache/)
LOCAL_MODELS = ".cache/local_models.json"


CARD = "README.md"  # the dataset card: its YAML ``configs`` list each config's files of the committed state


def data_files(config: str) -> str:
    """The glob of ``config``'s Parquet shards, relative to the output folder."""
    return f"data/{config}/*.parquet"


def card_configs(files: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """The card's ``configs``: each config with files, its exact files (relative to the output) as one split.

    Exact lists, not globs: a reader (``load_dataset(OUT, name)``, a push, training) sees the state the card
    was written for, never the next generation of a part beside the one it replaces.
    """
    return [{"config_name": name, "data_files": [{"split": "train", "path": list(paths)}]}
            for name, paths in files.items() if paths]


def hub_configs(names: Sequence[str]) -> list[dict[str, Any]]:
    """The card's ``configs`` as the Hub gets them: each config's files by glob (:func:`data_files`), a few lines
    whatever the number of parts.

    Exact on the Hub, where locally only a list is: a Hub commit is atomic, and an output's pushes take out the
    files of a part that a redo replaces in the commit that brings its new generation in, so the repository
    never holds a file outside its committed state. Exact lists grow with the parts (~650 KiB of YAML for the
    4,688 parts of 1.2M clips), and the Hub's check of card metadata refuses large YAML (HTTP 413).

    Example:
        >>> hub_configs(["captions"])
        [{'config_name': 'captions', 'data_files': [{'split': 'train', 'path': 'data/captions/*.parquet'}]}]
    """
    return [{"config_name": name, "data_files": [{"split": "train", "path": data_files(name)}]} for name in names]


def card_yaml(metadata: Mapping[str, Any]) -> str:
    """``metadata`` as a card's YAML block, as ``huggingface_hub`` writes it, by libyaml where PyYAML has it: the
    card of an output mid-run lists every file and is written at every commit (~0.1 s for 4,688 parts, not ~1 s).

    Example:
        >>> print(card_yaml({"configs": [{"config_name": "qa", "data_files": "data/qa/*.parquet"}]}))
        configs:
        - config_name: qa
          data_files: data/qa/*.parquet
    """
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(dict(metadata), Dumper=dumper, sort_keys=False, allow_unicode=True).strip()


def card_metadata(card: Path) -> dict[str, Any]:
    """The YAML metadata of the card at ``card`` (``{}`` without a YAML block), read by libyaml where PyYAML has it."""
    import yaml

    text = card.read_text(encoding="utf-8")
    match = re.match(r"\s*---\r?\n(.*?)\r?\n---(?:\r?\n|$)", text, re.DOTALL)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return (yaml.load(match.group(1), Loader=loader) or {}) if match else {}


def _listed_files(root: Path) -> dict[str, list[str]] | None:
    """The files the card at ``root`` lists per config; ``None`` where it lists none (no card, or globs)."""
    card = root / CARD
    configs = card_metadata(card).get("configs") if card.is_file() else None
    if not configs or any(isinstance(config.get("data_files"), str) for config in configs):
        return None
    listed = {config["config_name"]: [path for entry in config["data_files"] for path in
                                      ([entry["path"]] if isinstance(entry["path"], str) else entry["path"])]
              for config in configs}
    if any(char in path for paths in listed.values() for path in paths for char in "*?["):
        return None
    return listed


def config_files(root: Path, config: str) -> list[Path]:
    """``config``'s Parquet shards in the output's last committed state: the files its card lists.

    An output whose card names globs (as on the Hub, or written by earlier versions), or with no card yet: every
    finished shard.
    """
    listed = _listed_files(root)
    if listed is None:
        return sorted(root.glob(data_files(config)))
    return [root / path for path in listed.get(config, [])]
