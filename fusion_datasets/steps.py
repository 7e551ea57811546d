"""The step protocol: what every stage of a plan is, whatever computes it (an expert's model, an LLM, CLAP).

A step is a picklable callable over a ``datasets`` batch dict, usable as
``ds.map(step, batched=True, with_rank=True)``. It holds only its frozen config: models are loaded lazily
into the per-process cache of :mod:`fusion_datasets.runtime`, so ``datasets`` fingerprints a step by its
config and the package version, and a rerun of the same map hits the cache. The plan and the executors know
a step only through this protocol: its ``stage``, what it reads and writes, the features of its columns, its
fingerprint, counters and card entry, and ``process``.

Every failure becomes an entry of the row's ``errors`` list (``{"stage", "message"}``) and ``None``
in the columns the step could not fill; no row is ever dropped.

:class:`Step` is the protocol; :class:`ModelStep` adds what a step running its own model needs (the device,
loading once per process, ``from_pretrained`` options, batching with per-row recovery).
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Generic, TypeVar

from fusion_datasets import __version__, runtime
from fusion_datasets.config import is_resource, resource
from fusion_datasets.cues import CueOptions, text_cues
from fusion_datasets.loading import loading_model
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import prompt_name
from fusion_datasets.public import model_reference

logger = logging.getLogger(__name__)

ERRORS = "errors"
R = TypeVar("R")
ConfigT = TypeVar("ConfigT")
ModelConfigT = TypeVar("ModelConfigT", bound="ModelConfig")


def errors_feature() -> Any:
    """The ``datasets`` type of the ``errors`` column: a list of ``{stage, message}``."""
    from datasets import List, Value

    return List({"stage": Value("string"), "message": Value("string")})


def merge_features(input_features: Any, produced: dict[str, Any]) -> Any:
    """``input_features`` updated with the ``produced`` columns and ``errors``: pass it to ``map(features=...)``.

    Declaring the output types matters: a first batch without any error would otherwise fix ``errors``
    as a list of nulls, and the next batch's errors could not be written.
    """
    from datasets import Features

    return Features({**input_features, **produced, ERRORS: errors_feature()})


class Step(ABC, Generic[ConfigT]):
    """A stage of the plan. Subclasses set ``stage``, ``config_class`` (a frozen dataclass), ``features`` and
    ``process``."""

    stage: ClassVar[str]
    config_class: ClassVar[type]
    # a streaming step takes every row of a part in one call and keeps its backend busy by itself (LLM stages)
    streaming: ClassVar[bool] = False
    # What the stage tells later steps about a clip (fusion_datasets.cues): the text columns it shows as they
    # are, by prompt key, to the fusion LLM and to the QA LLM, and the card's modality coverage (name -> the
    # column whose non-blank or true value means a clip has it).
    fusion_texts: ClassVar[dict[str, str]] = {}
    qa_texts: ClassVar[dict[str, str]] = {}
    coverage: ClassVar[dict[str, str]] = {}

    def __init__(self, config: ConfigT | None = None, **overrides: Any) -> None:
        if config is None:
            config = self.config_class(**overrides)
        elif overrides:
            config = replace(config, **overrides)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        self.config: ConfigT = config

    @classmethod
    def for_plan(cls, config: Any, experts: Sequence[type[Step]] | None) -> Step:
        """This step in a plan whose expert stages run ``experts`` (``None``: each stage's default type); a step
        that shows their cues keeps them."""
        return cls(config)

    @classmethod
    def fusion_columns(cls) -> tuple[str, ...]:
        """The columns :meth:`fusion_cues` reads."""
        return tuple(cls.fusion_texts.values())

    @classmethod
    def fusion_cues(cls, row: Mapping[str, Any], options: CueOptions) -> dict[str, str]:
        """This stage's cues in the fusion prompt about one clip (key -> text; none where it has nothing)."""
        return text_cues(row, cls.fusion_texts, options.max_chars)

    @classmethod
    def qa_columns(cls) -> tuple[str, ...]:
        """The columns :meth:`qa_context` reads."""
        return tuple(cls.qa_texts.values())

    @classmethod
    def qa_context(cls, row: Mapping[str, Any]) -> dict[str, str]:
        """What of this stage the QA prompt shows about one clip, and its answers may be grounded in."""
        return text_cues(row, cls.qa_texts)

    @abstractmethod
    def features(self) -> dict[str, Any]:
        """The ``datasets`` feature of each column this step writes (``errors`` aside)."""

    def columns(self) -> tuple[str, ...]:
        return tuple(self.features())

    def reads(self) -> tuple[str, ...]:
        """The columns this step reads (``audio`` and ``video`` for the media): it reruns when they change."""
        return (self.audio_column, "start", "end")

    def writes(self) -> tuple[str, ...]:
        """The columns this step fills, including what it hands to later steps without storing it."""
        return self.columns()

    @property
    def audio_column(self) -> str:
        return "audio"

    @property
    def batch_size(self) -> int | None:
        """Clips per model call (``None``: the whole map batch)."""
        return None

    @property
    def served_concurrency(self) -> int | None:
        """For a step whose model answers from a server: the requests it keeps in flight (its backend
        bounds them over all its calls, so an executor may overlap calls). ``None``: it computes here."""
        return None

    def counters(self, outputs: Mapping[str, Sequence[Any]]) -> dict[str, float]:
        """This step's own counts over one batch of its ``outputs``, added up into ``stats.json``."""
        return {}

    def data_counts(self, cues: Any) -> dict[str, Any]:
        """What this step's columns hold in a part's ``cues`` (a ``datasets.Dataset`` that has them), for
        ``stats.json``: numbers, or lists of numbers (histograms), that add up over the parts."""
        return {}

    def summary(self, totals: Mapping[str, Any]) -> dict[str, Any]:
        """What ``stats.json`` says of this step beyond the ``totals`` of its data counts (rates, bin edges)."""
        return {}

    def fingerprint(self) -> str:
        """A hash of what this step computes: its class and its config, resources aside.

        Two runs whose step has the same fingerprint give the same columns; a rerun with another one
        reruns the step and the steps that read its columns.
        """
        text = json.dumps([type(self).__name__, _plain(self.fingerprint_settings())], sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def fingerprint_settings(self) -> dict[str, Any]:
        """The config fields :meth:`fingerprint` hashes: all but the resources."""
        return {f.name: getattr(self.config, f.name) for f in fields(self.config) if not is_resource(f)}

    def card_entry(self) -> dict[str, Any]:
        """What the dataset card says of this step: its model, revision and numeric settings."""
        values = {f.name: getattr(self.config, f.name) for f in fields(self.config)}
        prompt = values.get("prompt")
        model, revision = values.get("model"), values.get("revision")
        if model:
            model, revision = model_reference(model, revision)
        return {
            "stage": self.stage,
            "step": type(self).__name__,
            "model": model,
            "revision": revision,
            "prompt": prompt and prompt_name(prompt, values.get("prompt_version") or ""),
            "prompt_sha256": prompt and hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
            "settings": {name: value for name, value in values.items() if _is_number(value)},
            "fingerprint": self.fingerprint(),
        }

    def output_features(self, input_features: Any) -> Any:
        """The features of ``ds.map(self, ...)`` over a dataset with ``input_features``."""
        return merge_features(input_features, self.features())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def __getstate__(self) -> dict[str, Any]:
        # what datasets hashes: the config and the package version, nothing loaded
        return {"config": self.config, "version": __version__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: int | None = None) -> dict[str, list]:
        media = MediaBatch(batch, self.audio_column)
        outputs = self.process(media, rank)
        outputs[ERRORS] = media.errors
        return outputs

    @abstractmethod
    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        """Fill this step's columns for every row of ``media`` (``None`` where it failed)."""


@dataclass(frozen=True)
class ModelConfig:
    """What every step running its own model shares. ``device=None`` picks the device from the worker's rank."""

    model: str
    revision: str | None = None
    device: str | None = resource(None)
    dtype: str = "auto"
    trust_remote_code: bool = False
    batch_size: int | None = resource(None)  # clips per model call (None: every clip of the map batch at once)

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be None or >= 1, got {self.batch_size}")


class ModelStep(Step[ModelConfigT]):
    """A step that runs its own model (the experts, the CLAP filter): loaded once per process and device, called
    ``batch_size`` clips at a time, a failing call redone row by row."""

    @property
    def batch_size(self) -> int | None:
        return self.config.batch_size

    def device(self, rank: int | None) -> str:
        return runtime.resolve_device(self.config.device, rank)

    def load(self, rank: int | None, loader: Callable[[str, Any], R], *key: Any) -> R:
        """The model for this worker, loaded once per process by ``loader(device, dtype)``; ``key``: what
        else the loader's result depends on (a loader shared by several classes that check differently)."""
        device = self.device(rank)
        dtype = runtime.resolve_dtype(self.config.dtype, device)
        # keyed by the loader, so steps that share one (sound and music captions) share the model
        key = (loader.__qualname__, self.config.model, self.config.revision, device, str(dtype), *key)
        with loading_model(self.config.model):
            return runtime.cached_model(key, lambda: loader(device, dtype))

    def pretrained_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of every ``from_pretrained`` call of this step."""
        return {"revision": self.config.revision, "trust_remote_code": self.config.trust_remote_code}

    def check_architecture(self, supported: Sequence[str]) -> None:
        """Fail with a clear message when the configured model is not one of the ``supported`` model types."""
        from transformers import AutoConfig

        model_type = AutoConfig.from_pretrained(self.config.model, **self.pretrained_kwargs()).model_type
        if model_type not in supported:
            raise ValueError(
                f"{type(self).__name__} cannot run {self.config.model!r} (model_type {model_type!r}); "
                f"supported model types: {', '.join(supported)}"
            )

    def run_guarded(self, media: MediaBatch, rows: list[int], infer: Callable[[list[int]], list[R]]) -> dict[int, R]:
        """``infer`` on ``rows``, ``batch_size`` rows per call; a call that raises is redone row by row,
        recording each failing row's error."""
        if not rows:
            return {}
        size = self.batch_size or len(rows)
        if len(rows) > size:
            return {row: value for start in range(0, len(rows), size)
                    for row, value in self.run_guarded(media, rows[start:start + size], infer).items()}
        try:
            results = infer(rows)
        except Exception as error:  # noqa: BLE001 - a bad row must become a recorded error, not a crash
            if len(rows) == 1:
                logger.debug("%s failed on row %d", self.stage, rows[0], exc_info=True)
                media.add_error(rows[0], self.stage, f"{type(error).__name__}: {error}")
                return {}
            logger.warning("%s failed on a batch of %d (%s); retrying row by row", self.stage, len(rows), error)
            return {row: value for one in rows for row, value in self.run_guarded(media, [one], infer).items()}
        return dict(zip(rows, results))

    def empty_outputs(self, size: int) -> dict[str, list]:
        return {column: [None] * size for column in self.columns()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """Config values as JSON data (nested configs as mappings, resources aside), for fingerprints."""
    if hasattr(value, "__dataclass_fields__"):
        settings = {f.name: _plain(getattr(value, f.name)) for f in fields(value) if not is_resource(f)}
        return {**getattr(value, "fingerprint_extras", {}), **settings}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
