"""CLAP training data: clips with captions from run outputs, saved datasets, the Hub or WebDataset shards
(:mod:`~fusion_datasets.train.shards`), decoded in workers and ordered per epoch by :class:`EpochOrder`.

Each item is decoded, resampled to the feature extractor's rate, randomly cropped to the model's window
(a shorter clip is padded by the extractor, ``repeatpad`` for the released CLAPs) and turned into
features inside the DataLoader worker. Randomness (the crop, the caption of a ``captions`` list) comes
from a generator seeded by ``(seed, epoch, source, row)``, so an epoch reads the same whatever the
number of workers or processes, and a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fusion_datasets.clap.base import MAX_TEXT_TOKENS, seeded_numpy
from fusion_datasets.errors import UserError
from fusion_datasets.layout import config_files
from fusion_datasets.loading import load_undecoded, undecoded
from fusion_datasets.media import MediaError, decode_audio, resample
from fusion_datasets.train.shards import open_shards

logger = logging.getLogger(__name__)

CAPTION_COLUMNS = ("caption", "captions")


def parse_dataset_spec(spec: str) -> tuple[str, str | None]:
    """``DATASET[:config]`` split into the dataset (folder or Hub id) and its config name.

    Example:
        >>> parse_dataset_spec("runs/out:captions"), parse_dataset_spec("org/name")
        (('runs/out', 'captions'), ('org/name', None))
    """
    name, sep, config = spec.rpartition(":")
    if not sep or not name or not config or "/" in config:
        return spec, None
    return name, config


def training_table(spec: str, split: str) -> Any:
    """The ``split`` of a training source: WebDataset shards (a folder or ``hf://`` path holding
    ``{split}/sizes.json``, a :class:`~fusion_datasets.train.shards.ShardTable`), else :func:`load_table`'s."""
    shards = open_shards(parse_dataset_spec(spec)[0], split)
    return load_table(spec, split) if shards is None else shards


def load_table(spec: str, split: str) -> Any:
    """The ``split`` of ``DATASET[:config]``: a ``save_to_disk`` folder, a folder ``load_dataset`` reads
    (a run output defaults to its ``captions`` config) or a Hub id; audio is left undecoded."""
    import datasets

    name, config = parse_dataset_spec(spec)
    path = Path(name)
    if path.is_dir() and any(
        (path / marker).exists() for marker in ("dataset_info.json", "dataset_dict.json")
    ):
        table = datasets.load_from_disk(name)
        if isinstance(table, datasets.DatasetDict):
            if split not in table:
                raise ValueError(f"{name} has no split {split!r}; it has {', '.join(table)}")
            table = table[split]
        return undecoded(table)
    if config is None and config_files(path, "captions"):
        config = "captions"
    try:
        return load_undecoded(name, config, split)
    except FileNotFoundError as error:
        if not path.is_dir():
            raise
        raise UserError(
            f"{name} is neither a dataset nor WebDataset shards: `datasets` finds no data in it ({error}), and it "
            f"has no {split}/sizes.json with {split}/*.tar shards. Give a run output, a `save_to_disk` folder, a "
            "folder of data files, a Hub id, or a folder that `fusion-datasets export OUT --format webdataset` wrote"
        ) from error


def caption_column(table: Any, spec: str) -> str:
    """The caption column of a training table: ``caption`` (a string) or ``captions`` (a list)."""
    for column in CAPTION_COLUMNS:
        if column in table.column_names:
            return column
    raise ValueError(
        f"{spec} has no caption column ({' or '.join(CAPTION_COLUMNS)}); "
        f"it has {', '.join(table.column_names)}"
    )


def random_crop(samples: np.ndarray, window: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``window``-sample stretch of a 1-D clip; a clip no longer than the window is kept whole.

    Example:
        >>> random_crop(np.arange(10), 4, np.random.default_rng(0)).size
        4
    """
    if len(samples) <= window:
        return samples
    start = int(rng.integers(0, len(samples) - window + 1))
    return samples[start : start + window]


class CaptionedClips:
    """One training dataset as a map-style torch dataset of ``{input_features, is_longer, caption}``.

    A row whose audio cannot be decoded (or that has no caption, or cannot be read from its shard) gives
    ``{"skipped": {...}}`` instead, which :class:`ClapCollator` drops and reports: it never stops training.
    ``blocks`` are the sizes of the runs of rows read together (a shard's samples; a table is one block).
    """

    def __init__(
        self,
        table: Any,
        spec: str,
        key: int,
        feature_extractor: Any,
        *,
        fused: bool,
        seed: int = 0,
        audio_column: str = "audio",
    ) -> None:
        if audio_column not in table.column_names:
            raise ValueError(f"{spec} has no {audio_column!r} column; it has {', '.join(table.column_names)}")
        self.table = table
        self.spec = spec
        self.key = key
        self.captions = caption_column(table, spec)
        self.audio_column = audio_column
        self.feature_extractor = feature_extractor
        self.fused = fused
        self.seed = seed
        self.epoch = 0
        self.blocks: list[int] = list(getattr(table, "shard_sizes", None) or [table.num_rows])

    def __len__(self) -> int:
        return self.table.num_rows

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _caption(self, value: Any, rng: np.random.Generator) -> str:
        values = [value] if isinstance(value, str) else list(value or [])
        captions = [caption for caption in values if isinstance(caption, str) and caption.strip()]
        if not captions:
            raise MediaError("the row has no caption")
        return captions[int(rng.integers(len(captions)))]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, self.key, int(index)])
        extractor = self.feature_extractor
        row: dict[str, Any] = {}
        try:
            row = self.table[int(index)]
            caption = self._caption(row[self.captions], rng)
            samples = resample(
                decode_audio(row[self.audio_column], row.get("start"), row.get("end")),
                extractor.sampling_rate,
            )[0]
        except MediaError as error:
            return {
                "skipped": {
                    "dataset": self.spec,
                    "row": int(index),
                    "id": row.get("id"),
                    "message": str(error),
                }
            }
        window = extractor.nb_max_samples
        # fusion takes its own chunks of the whole clip; an unfused model sees one random window
        clip = samples if self.fused else random_crop(samples, window, rng)
        with seeded_numpy(int(rng.integers(2**31))):
            features = extractor(
                clip,
                sampling_rate=extractor.sampling_rate,
                truncation="fusion" if self.fused else "rand_trunc",
                return_tensors="np",
            )
        # the extractor flags a random clip of an all-short batch as longer: only a clip past the window is
        return {
            "input_features": features["input_features"][0],
            "is_longer": len(clip) > window,
            "caption": caption,
        }


class TrainingClips:
    """Several :class:`CaptionedClips` as one dataset (a ``ConcatDataset`` that passes on the epoch)."""

    def __init__(self, sources: Sequence[CaptionedClips]) -> None:
        from torch.utils.data import ConcatDataset

        self.sources = list(sources)
        self.joined = ConcatDataset(self.sources)

    def __len__(self) -> int:
        return len(self.joined)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.joined[index]

    def set_epoch(self, epoch: int) -> None:
        for source in self.sources:
            source.set_epoch(epoch)


def block_order(blocks: Sequence[int], rng: np.random.Generator) -> Iterator[int]:
    """The rows of consecutive blocks of sizes ``blocks``: the blocks in a random order, each one's rows shuffled.

    Example:
        >>> list(block_order([2, 3], np.random.default_rng(0)))
        [0, 1, 4, 2, 3]
    """
    starts = np.cumsum([0, *blocks])
    for block in rng.permutation(len(blocks)):
        yield from (starts[block] + rng.permutation(blocks[block])).tolist()


def interleaving(sizes: Sequence[int], rng: np.random.Generator, chunk: int = 4096) -> Iterator[int]:
    """Each source's number ``sizes[source]`` times, in a uniformly random order, drawn ``chunk`` at a time.

    Example:
        >>> sorted(interleaving([2, 1], np.random.default_rng(0)))
        [0, 0, 1]
    """
    remaining = np.array(sizes, dtype=np.int64)
    while remaining.sum():
        # how many of the next `chunk` rows each source has, as in one shuffle of every row
        counts = rng.multivariate_hypergeometric(remaining, min(chunk, int(remaining.sum())))
        remaining -= counts
        yield from rng.permutation(np.repeat(np.arange(len(sizes)), counts)).tolist()


class EpochOrder:
    """The sampler of :class:`TrainingClips`: each epoch's order of its rows, seeded by ``(seed, epoch)``.

    Each source's blocks (shards) come in a random order with their rows shuffled, and the sources are interleaved
    at random, so a shard is read whole before the next one while a batch still mixes every source. The order
    depends on neither the processes nor the workers that read it; the data loader calls ``set_epoch``.
    """

    def __init__(self, clips: TrainingClips, seed: int) -> None:
        self.blocks = [source.blocks for source in clips.sources]
        self.sizes = [len(source) for source in clips.sources]
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return sum(self.sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        streams = [np.random.default_rng(seeds) for seeds in np.random.SeedSequence([self.seed, self.epoch]).spawn(
            len(self.sizes) + 1)]
        orders = [block_order(blocks, rng) for blocks, rng in zip(self.blocks, streams, strict=False)]
        starts = np.cumsum([0, *self.sizes]).tolist()
        for source in interleaving(self.sizes, streams[-1]):
            yield starts[source] + next(orders[source])


class ClapCollator:
    """Stacks features, tokenizes captions and lists the skipped rows: ``{size, skipped, ...tensors}``."""

    def __init__(self, tokenizer: Any, max_length: int = MAX_TEXT_TOKENS) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        kept = [item for item in items if "skipped" not in item]
        batch: dict[str, Any] = {
            "size": len(kept),
            "skipped": [item["skipped"] for item in items if "skipped" in item],
        }
        if kept:
            tokens = self.tokenizer(
                [item["caption"] for item in kept],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            batch.update(
                input_ids=tokens["input_ids"],
                attention_mask=tokens["attention_mask"],
                input_features=torch.from_numpy(np.stack([item["input_features"] for item in kept])),
                is_longer=torch.tensor([[item["is_longer"]] for item in kept]),
            )
        return batch
