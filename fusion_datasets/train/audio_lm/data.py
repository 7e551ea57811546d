"""``train-audio-lm``'s data: instruction → answer rows about clips, from run outputs, the Hub and FusionAudio JSON.

A run output (or a Hub dataset in its layout) gives its ``captions`` config as instruction → caption (the
instruction the ``messages`` export gives the clip: one of a small set, by its id) and its ``qa`` config as
question → answer about the clip of ``clip_id``: the rows that export writes. A FusionAudio release JSON gives
``instruction`` (+ ``input``) → ``output`` about the file ``audio_id`` (relative to the JSON's folder). Rows
only name their clip (a source and a row of its audio table); the audio is decoded when a batch is made, so
memory does not grow with the clips' size.

Before training every clip is decoded once and every row checked (:func:`check_examples`): a row whose clip
cannot be decoded or that the processor refuses, or whose answer is empty, is left out and counted.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.errors import UserError
from fusion_datasets.export.messages import caption_prompt
from fusion_datasets.loading import load_undecoded
from fusion_datasets.media import MediaError, decode_audio, resample

EXAMPLE_COLUMNS = ("source", "row", "clip", "prompt", "answer")


@dataclass
class Source:
    """One ``--data`` source: its clips (``audio`` with ``start``/``end``) and its rows, named by ``row``
    (a row of ``clips``) and ``clip`` (what keeps a clip's rows in one split)."""

    name: str
    kind: str  # "run output", "FusionAudio JSON"
    weight: float
    fingerprint: str
    clips: Any  # a datasets.Dataset
    rows: dict[str, list] = field(default_factory=lambda: {name: [] for name in EXAMPLE_COLUMNS[1:]})
    skipped: Counter = field(default_factory=Counter)

    def add(self, row: int, clip: str, prompt: str, answer: Any) -> None:
        if not isinstance(answer, str) or not answer.strip():
            self.skipped["empty_answer"] += 1
            return
        for column, value in zip(EXAMPLE_COLUMNS[1:], (row, clip, prompt, answer.strip())):
            self.rows[column].append(value)


def _read_release_json(path: Path, weight: float) -> Source:
    """A FusionAudio release JSON: a list of ``{audio_id, instruction, input, output}``."""
    import datasets

    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a JSON list of FusionAudio rows ({error})") from error
    if not isinstance(items, list):
        raise UserError(f"{path}: expected a JSON list of rows with audio_id, instruction, input and output")
    fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    audio_ids = sorted({item["audio_id"] for item in items
                        if isinstance(item, dict) and isinstance(item.get("audio_id"), str)})
    paths = [str(path.parent / audio_id) for audio_id in audio_ids]  # an absolute audio_id stays as it is
    clips = datasets.Dataset.from_dict({"audio": paths, "start": [None] * len(paths), "end": [None] * len(paths)},
                                       features=datasets.Features({"audio": datasets.Value("string"),
                                                                   "start": datasets.Value("float64"),
                                                                   "end": datasets.Value("float64")}))
    source = Source(str(path), "FusionAudio JSON", weight, fingerprint, clips)
    index = {audio_id: row for row, audio_id in enumerate(audio_ids)}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("audio_id"), str) \
                or not isinstance(item.get("instruction"), str):
            source.skipped["malformed_row"] += 1
            continue
        extra = item.get("input")
        prompt = item["instruction"] + (f"\n{extra}" if isinstance(extra, str) and extra.strip() else "")
        source.add(index[item["audio_id"]], item["audio_id"], prompt, item.get("output"))
    return source


def _config_names(name: str) -> list[str]:
    import datasets

    try:
        return datasets.get_dataset_config_names(name)
    except (FileNotFoundError, ValueError) as error:
        raise UserError(f"--data {name}: not a run output, a Hub dataset in its layout or a FusionAudio JSON "
                        f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from error


def _read_run_output(name: str, weight: float) -> Source:
    """A run output or a Hub dataset in its layout: ``captions`` (and ``qa`` where it has one)."""
    configs = _config_names(name)
    if "captions" not in configs:
        raise UserError(f"--data {name}: no captions config (it has {', '.join(configs)}); give a run's output, "
                        "a Hub dataset in its layout or a FusionAudio JSON")
    captions = load_undecoded(name, "captions", "train")
    missing = {"id", "audio", "caption"} - set(captions.column_names)
    if missing:
        raise UserError(f"--data {name}: its captions have no {', '.join(sorted(missing))} column")
    clips = captions.select_columns([column for column in ("audio", "start", "end") if column in captions.column_names])
    source = Source(name, "run output", weight, captions._fingerprint, clips)
    ids = captions["id"]
    for row, (clip, caption) in enumerate(zip(ids, captions["caption"])):
        source.add(row, clip, caption_prompt(clip), caption)
    if "qa" in configs:
        qa = load_undecoded(name, "qa", "train")
        rows = {clip: row for row, clip in enumerate(ids)}
        for clip, question, answer in zip(qa["clip_id"], qa["question"], qa["answer"]):
            if clip not in rows or not isinstance(question, str):
                source.skipped["qa_without_caption" if clip not in rows else "malformed_row"] += 1
                continue
            source.add(rows[clip], clip, question, answer)
        source.fingerprint = hashlib.sha256(f"{captions._fingerprint}:{qa._fingerprint}".encode()).hexdigest()[:16]
    return source


def read_source(spec: str, weight: float) -> Source:
    """The source ``spec`` names: a ``.json`` file (FusionAudio's release), else a run output or Hub id."""
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        return _read_release_json(path, weight)
    return _read_run_output(spec, weight)


def weighted_rows(count: int, weight: float, seed: int, key: int) -> np.ndarray:
    """The rows a source of ``count`` rows gives at ``weight``: each row ``int(weight)`` times, then the
    fraction left as a seeded draw without repeats (drawn once, for the whole run).

    Example:
        >>> weighted_rows(4, 1.5, seed=0, key=0).size
        6
    """
    whole, fraction = int(weight), weight - int(weight)
    drawn = np.random.default_rng([seed, key]).permutation(count)[: round(fraction * count)]
    return np.sort(np.concatenate([np.tile(np.arange(count), whole), drawn]))


def held_out(clip: str, fraction: float, seed: int) -> bool:
    """Whether ``clip`` (with all its rows) is in the held-out split: a seeded hash, the same on every machine."""
    digest = hashlib.sha256(f"held-out:{seed}:{clip}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


@dataclass
class Examples:
    """The rows of every source, split: ``train`` and ``held_out`` are tables of :data:`EXAMPLE_COLUMNS`."""

    sources: list[Source]
    train: Any
    held_out: Any


def gather_examples(specs: Sequence[tuple[str, float]], seed: int, eval_fraction: float) -> Examples:
    """Read every source, weight its rows and hold out ``eval_fraction`` of the clips."""
    import datasets

    sources = [read_source(spec, weight) for spec, weight in specs]
    splits: dict[bool, dict[str, list]] = {split: {column: [] for column in EXAMPLE_COLUMNS} for split in (False, True)}
    for key, source in enumerate(sources):
        if not source.rows["row"]:
            raise UserError(f"--data {source.name}: no usable rows ({dict(source.skipped) or 'it is empty'})")
        for index in weighted_rows(len(source.rows["row"]), source.weight, seed, key):
            split = splits[held_out(f"{key}:{source.rows['clip'][index]}", eval_fraction, seed)]
            split["source"].append(key)
            for column in EXAMPLE_COLUMNS[1:]:
                split[column].append(source.rows[column][index])
    train, evaluation = (datasets.Dataset.from_dict(splits[split]) for split in (False, True))
    return Examples(sources, train, evaluation)


class ClipReader:
    """Decodes a row's clip: mono at ``sampling_rate``, cut to ``max_seconds`` (the family's window at most)."""

    def __init__(self, sources: Sequence[Source], sampling_rate: int, max_seconds: float) -> None:
        self.clips = [source.clips for source in sources]
        self.sampling_rate = sampling_rate
        self.limit = int(max_seconds * sampling_rate)

    def read(self, source: int, row: int) -> tuple[np.ndarray, bool]:
        """The clip's samples and whether it was cut; raises :class:`MediaError` when it cannot be decoded."""
        clip = self.clips[source][int(row)]
        samples = resample(decode_audio(clip["audio"], clip.get("start"), clip.get("end")), self.sampling_rate)[0]
        return samples[: self.limit], len(samples) > self.limit


class InstructionRows:
    """A split as a torch dataset of ``{"audio", "prompt", "answer"}`` (the clip decoded here, in a worker)."""

    def __init__(self, table: Any, reader: ClipReader) -> None:
        self.table = table
        self.reader = reader

    def __len__(self) -> int:
        return self.table.num_rows

    def __getitem__(self, index: int) -> dict[str, Any]:
        example = self.table[int(index)]
        audio, _ = self.reader.read(example["source"], example["row"])
        return {"audio": audio, "prompt": example["prompt"], "answer": example["answer"]}


class _ClipCheck:
    """Each distinct clip of a table decoded and put through ``check`` (the processor), in DataLoader workers."""

    def __init__(self, keys: list[tuple[int, int]], reader: ClipReader, check: Any) -> None:
        self.keys = keys
        self.reader = reader
        self.check = check

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[tuple[int, int], str | None, bool]:
        key = self.keys[index]
        try:
            audio, cut = self.reader.read(*key)
        except MediaError as error:
            return key, f"undecodable: {error}", False
        try:
            self.check(audio)
        except Exception as error:  # noqa: BLE001 - whatever a processor raises, the clip is left out
            return key, f"refused by the processor: {type(error).__name__}: {error}", cut
        return key, None, cut


@dataclass
class CheckedClips:
    """What :func:`check_examples` found: rows left out by reason, the bad clips, and the clips that were cut."""

    skipped: Counter = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"source", "row", "problem"}
    cut: int = 0


def check_examples(table: Any, reader: ClipReader, check: Any, num_workers: int) -> tuple[Any, CheckedClips]:
    """``table`` without the rows whose clip cannot be decoded or that ``check`` (the processor) refuses."""
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    keys = sorted(set(zip(table["source"], table["row"])))
    loader = DataLoader(_ClipCheck(keys, reader, check), batch_size=None, num_workers=num_workers)
    found, bad = CheckedClips(), {}
    for (source, row), problem, cut in tqdm(loader, total=len(keys), desc="checking clips", unit="clip"):
        key = (int(source), int(row))  # the loader gives the tuple back as a list
        found.cut += cut
        if problem is not None:
            bad[key] = "undecodable_clip" if problem.startswith("undecodable") else "refused_clip"
            found.problems.append({"source": key[0], "row": key[1], "problem": problem})
    rows = list(zip(table["source"], table["row"]))
    found.skipped.update(bad[key] for key in rows if key in bad)
    return (table.select([index for index, key in enumerate(rows) if key not in bad]) if bad else table), found
