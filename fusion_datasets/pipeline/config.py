"""The pipeline config: input, expert stages, LLM backend, fusion, filter, QA and output, from YAML.

Bundled configs (``tiny``, ``small``, ``paper``) live in ``fusion_datasets/configs/``; a config is
named by one of those names or by a YAML path, then ``--set key=value`` overrides apply. Every stage
runs the class its section's ``type`` names (:mod:`fusion_datasets.registry`; default: the paper's); its
options are checked against that class' config dataclass, so errors name ``experts.speech.model`` and the
allowed keys. The ``llm`` section is the chat backend every stage with a ``backend`` of its own starts from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from fusion_datasets.chat.backends import BackendConfig, TransformersBackendConfig
from fusion_datasets.config import ConfigError, apply_overrides, from_mapping, to_mapping
from fusion_datasets.hub.publish import PUBLISH_AUDIO
from fusion_datasets.public import public_config
from fusion_datasets.registry import (
    EXPERT_STAGES,
    LATER_STAGES,
    STAGES,
    build_step,
    section,
    stage_classes,
    step_class,
)
from fusion_datasets.runtime import cache_dir
from fusion_datasets.steps import Step

BUNDLED = ("tiny", "small", "paper", "paper-inprocess")
ENGINES = ("local", "ray")
TINY_ZOO = "{tiny_zoo}"  # stands for the tiny zoo's folder in a config (the `tiny` config's models)


def tiny_zoo_dir() -> Path:
    """Where configs find the tiny zoo: ``$FUSION_DATASETS_TINY_ZOO`` or ``tiny-zoo`` in fusion_datasets' cache."""
    return Path(os.environ.get("FUSION_DATASETS_TINY_ZOO") or cache_dir() / "tiny-zoo")


@dataclass(frozen=True)
class InputConfig:
    path: str = ""  # a folder of media files, a Parquet file or folder, a saved dataset, or a Hub dataset id
    split: str = "train"  # the split of a saved DatasetDict or a Hub dataset
    config: str | None = None  # a Hub dataset's config (its card's `configs`); default: its default one
    limit: int | None = None  # only the first N clips (a trial run)
    format: Literal["auto", "media", "parquet"] = "auto"  # how a folder is read; auto: see the README
    segment_seconds: float | None = None  # cut longer files into clips of this length (ids carry the offsets)
    max_seconds: float | None = 600.0  # a whole file longer than this is a decode error, not decoded (null: no limit)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be null (every clip) or >= 1, got {self.limit}")
        for name in ("segment_seconds", "max_seconds"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be null or > 0, got {value}")


@dataclass(frozen=True)
class OutputConfig:
    path: str = "output"  # a folder, or hf://datasets/ORG/NAME to push each part as it is done
    shard_size: int = 256  # clips per part of the output: the unit of commit and of work per process
    num_shards: int | None = None  # a fixed number of parts for the new clips instead (shard_size is then ignored)
    batch_size: int = 8  # clips decoded together per map batch (an expert's own batch_size splits its model calls)
    num_proc: int | None = None  # worker processes for each pass of experts over a part (CPU work)
    embed_audio: bool = False  # store the audio bytes in the Parquet files instead of a reference
    # what a push or an hf:// output publishes of the audio: embed, source, none; auto: only audio already embedded
    publish_audio: str = "auto"
    export: str | None = None  # "fusionaudio": also write the FusionAudio JSON release format
    export_audio_root: str | None = None  # the folder the export's audio_id paths are relative to (default: absolute)
    license: str = "other"  # the dataset's license on its card (an id from the Hub's list)
    pretty_name: str | None = None  # the card's title (default: the name of the output folder or Hub repository)
    private: bool = False  # for hf:// outputs: create the repository private
    # for hf:// outputs: seconds between Hub commits of the parts done since the last (0: a commit per part);
    # the Hub limits commits per hour, and 1.2M clips are 4,688 parts
    push_interval: float = 600.0
    removed_clips: str = "keep"  # clips of the output no longer in the input: "keep" them, or "drop" them

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError(f"shard_size and batch_size must be >= 1, got {self.shard_size} and {self.batch_size}")
        if self.num_shards is not None and self.num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
        if self.push_interval < 0:
            raise ValueError(f"push_interval must be >= 0 seconds, got {self.push_interval}")
        if self.num_proc is not None and self.num_proc < 1:
            raise ValueError(f"num_proc must be >= 1, got {self.num_proc}")
        if self.export not in (None, "fusionaudio"):
            raise ValueError(f"export must be null or 'fusionaudio', got {self.export!r}")
        if self.export_audio_root and not self.export:
            raise ValueError(f"export_audio_root={self.export_audio_root!r} is for the export: set export "
                             "(--export fusionaudio) or leave it out")
        if self.publish_audio not in PUBLISH_AUDIO:
            raise ValueError(f"publish_audio must be one of {', '.join(PUBLISH_AUDIO)}, got {self.publish_audio!r}")
        if self.removed_clips not in ("keep", "drop"):
            raise ValueError(f"removed_clips must be 'keep' or 'drop', got {self.removed_clips!r}")


@dataclass(frozen=True)
class StageResources:
    """What one stage's actors get on Ray (``ray.resources.<stage>``); the local executor ignores it."""

    num_gpus: float = 0.0  # per actor; fractions let small experts share a GPU
    num_cpus: float = 1.0  # per actor
    actors: int | tuple[int, ...] = 1  # a fixed pool size, or [min, max] for an autoscaling pool
    batch_size: int | None = None  # rows per call of an actor (default: output.batch_size; LLM stages: a part)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actors", (self.actors,) if isinstance(self.actors, int) else tuple(self.actors))
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise ValueError(f"num_gpus and num_cpus must be >= 0, got {self.num_gpus} and {self.num_cpus}")
        if len(self.actors) not in (1, 2) or min(self.actors) < 1 or self.actors[0] > self.actors[-1]:
            raise ValueError(f"actors must be a pool size >= 1 or [min, max], got {list(self.actors)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be null or >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class RayConfig:
    """Where the Ray executor runs (``address``: ``auto``, ``ray://HOST:PORT``; null starts a local Ray)."""

    address: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # stage -> StageResources options
    connect_timeout: float = 30.0  # seconds to reach the cluster at `address` before the run fails

    def __post_init__(self) -> None:
        if not self.connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0, got {self.connect_timeout}")

    def stage(self, name: str) -> StageResources:
        return from_mapping(StageResources, self.resources.get(name) or {}, f"ray.resources.{name}")


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "custom"
    input: InputConfig = field(default_factory=InputConfig)
    experts: dict[str, Any] = field(default_factory=dict)  # stage -> options; `enabled: false` turns one off
    llm: BackendConfig = field(default_factory=TransformersBackendConfig)
    fusion: dict[str, Any] = field(default_factory=dict)
    filter: dict[str, Any] = field(default_factory=dict)
    qa: dict[str, Any] = field(default_factory=dict)
    output: OutputConfig = field(default_factory=OutputConfig)
    engine: str = "local"  # "local" (this process, or one per rank) or "ray" (Ray Data, every stage at once)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.experts) - set(EXPERT_STAGES))
        if unknown:
            raise ValueError(f"unknown expert stage {unknown[0]!r}; stages: {', '.join(EXPERT_STAGES)}")
        self.expert_steps()  # each stage's type and options checked now, not when the run reaches it
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for stage in self.ray.resources:
            if stage not in STAGES:
                raise ValueError(f"ray.resources: unknown stage {stage!r}; stages: {', '.join(STAGES)}")
            self.ray.stage(stage)  # checked now, not when the run reaches it

    def expert_steps(self) -> list[Step]:
        """The enabled expert stages' steps, in plan order (:data:`~fusion_datasets.registry.EXPERT_STAGES`)."""
        steps = []
        for stage in EXPERT_STAGES:
            options = _enabled(self.experts.get(stage), section(stage))
            if stage in self.experts and options is not None:
                steps.append(build_step(stage, options))
        return steps

    def expert_classes(self) -> tuple[type[Step], ...]:
        """Each stage's expert class (its configured ``type``, enabled or not), for what the fusion and QA
        steps and the card take from the experts (:func:`~fusion_datasets.registry.stage_classes`)."""
        return stage_classes({stage: (options or {}).get("type") for stage, options in self.experts.items()})


def _config_text(name_or_path: str) -> str:
    if name_or_path in BUNDLED:
        return resources.files("fusion_datasets").joinpath(f"configs/{name_or_path}.yaml").read_text("utf-8")
    if Path(name_or_path).is_file():
        return Path(name_or_path).read_text("utf-8")
    raise ConfigError(f"config {name_or_path!r} is neither a bundled config ({', '.join(BUNDLED)}) nor a file")


def uses_tiny_zoo(name_or_path: str) -> bool:
    """Whether a config names the tiny zoo's models (``{tiny_zoo}``): its runner must build them first
    (``fusion-datasets run`` and ``demo --tiny-models`` do, the tests' ``tiny_zoo`` fixture too)."""
    return TINY_ZOO in _config_text(name_or_path)


def load_config(
    name_or_path: str, overrides: tuple[str, ...] | list[str] = (), tiny_zoo: Path | None = None
) -> PipelineConfig:
    """A bundled config by name, or a YAML file, with ``key=value`` overrides applied.

    ``{tiny_zoo}`` becomes ``tiny_zoo`` (default: :func:`tiny_zoo_dir`); nothing is built here (see
    :func:`uses_tiny_zoo`).
    """
    zoo = str(tiny_zoo or tiny_zoo_dir())
    data = yaml.safe_load(_config_text(name_or_path).replace(TINY_ZOO, zoo)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {name_or_path}: expected a mapping of sections (name, input, experts, llm, "
                          f"fusion, filter, qa, output), got a {type(data).__name__}")
    return from_mapping(PipelineConfig, apply_overrides(data, overrides))


def load_run_config(root: Path | str) -> PipelineConfig:
    """The config a run published in its output folder ``root`` (``config.yaml``), as its card shows it."""
    path = Path(root) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a card renders a run's output folder")
    return load_config(str(path))


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as YAML, as published next to the output: models by Hub id or a stable local
    name, local paths by their name (:func:`~fusion_datasets.public.public_config`)."""
    return yaml.safe_dump(public_config(to_mapping(config)), sort_keys=False)


def _enabled(options: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    options = dict(options or {})
    enabled = options.pop("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: expected true or false, got {enabled!r}")
    return options if enabled else None


def _step_backend(llm: BackendConfig, own: dict[str, Any]) -> dict[str, Any]:
    """A step's ``backend:``: the ``llm`` section with the step's own keys over it; of another kind, its own."""
    shared = to_mapping(llm)
    return shared | own if own.get("kind", llm.kind) == llm.kind else own


def build_steps(config: PipelineConfig) -> list[Step]:
    """The pipeline's steps in order (:data:`~fusion_datasets.registry.STAGES`): the experts, then fusion,
    the CLAP filter and QA, each from the registry by its section's ``type``."""
    steps = config.expert_steps()
    experts = config.expert_classes()
    for stage in LATER_STAGES:
        options = _enabled(getattr(config, section(stage)), section(stage))
        if options is None:
            continue
        if "backend" in {item.name for item in fields(step_class(stage, options.get("type")).config_class)}:
            options = {**options, "backend": _step_backend(config.llm, options.get("backend") or {})}
        steps.append(build_step(stage, options, experts))
    return steps
