"""Which class runs each stage of the plan: the ``type`` of the stage's config section names one.

Every stage comes from here, experts, fusion, filter and QA alike: a built-in step registers itself with
:func:`register`; another package adds one through the entry point group ``fusion_datasets.steps``, an entry
named ``<stage>.<type>`` pointing at the class (a :class:`~fusion_datasets.steps.Step` subclass whose ``stage``
is that stage). A stage without ``type`` runs its default (:data:`DEFAULTS`), so a config written before
types existed runs the same steps, with the same fingerprints.

The built-in steps live in the packages above this module: they are imported by name at the first lookup
(:data:`BUILT_IN`), as ``transformers``' auto classes import their models, so no arrow runs back up.

Example:
    >>> step_class("tagging", "ast").__name__
    'ASTAudioTagger'
    >>> build_step("tagging", {"type": "ast", "top_k": 5}).config.top_k
    5
    >>> step_class("clap_filter").__name__, section("clap_filter")
    ('ClapSimilarityFilter', 'filter')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any, TypeVar

from fusion_datasets.config import ConfigError, from_mapping
from fusion_datasets.steps import Step

# The expert stages in the plan's order (separation before speech, tagging before the music gate), then the
# stages that read what they found.
EXPERT_STAGES = ("separation", "speech", "tagging", "sound", "music", "visual")
LATER_STAGES = ("fusion", "clap_filter", "qa")
STAGES = (*EXPERT_STAGES, *LATER_STAGES)
DEFAULTS = {"separation": "htdemucs", "speech": "whisper", "tagging": "ast", "sound": "audio-llm",
            "music": "audio-llm", "visual": "video-llm", "fusion": "llm", "clap_filter": "clap", "qa": "llm"}
BUILT_IN = ("fusion_datasets.experts", "fusion_datasets.llm.fusion", "fusion_datasets.llm.qa",
            "fusion_datasets.clap.filter")
ENTRY_POINT_GROUP = "fusion_datasets.steps"
S = TypeVar("S", bound=type[Step])

_TYPES: dict[str, dict[str, type[Step]]] = {stage: {} for stage in STAGES}
_loaded = False


def section(stage: str) -> str:
    """The config section that configures ``stage``: ``experts.<stage>`` for an expert, ``filter`` for the
    CLAP filter, the stage's own name otherwise."""
    return f"experts.{stage}" if stage in EXPERT_STAGES else {"clap_filter": "filter"}.get(stage, stage)


def register(stage: str, name: str) -> Callable[[S], S]:
    """A class decorator: ``stage``'s steps include the class, as ``type: name``."""

    def add(cls: S) -> S:
        if stage not in _TYPES:
            raise ValueError(f"{cls.__name__}: unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        if cls.stage != stage:
            raise ValueError(f"{cls.__name__} is a {cls.stage!r} step, not a {stage!r} step")
        known = _TYPES[stage].setdefault(name, cls)
        if known is not cls:
            raise ValueError(f"{section(stage)}.type {name!r} is taken by {known.__module__}.{known.__name__}")
        return cls

    return add


def _load() -> None:
    """Import the built-in steps and register the entry points of ``fusion_datasets.steps`` (once per process)."""
    global _loaded
    if _loaded:
        return
    for module in BUILT_IN:
        importlib.import_module(module)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        stage, _, name = entry.name.partition(".")
        register(stage, name)(entry.load())
    _loaded = True  # not before: a plugin that fails to load fails every lookup, not only the first


def step_types(stage: str) -> dict[str, type[Step]]:
    """``stage``'s steps by type name."""
    _load()
    return dict(_TYPES[stage])


def step_class(stage: str, name: str | None = None) -> type[Step]:
    """The step class of ``stage``'s ``type: name`` (``None``: the stage's default)."""
    types = step_types(stage)
    name = DEFAULTS[stage] if name is None else name
    if name not in types:
        raise ConfigError(f"{section(stage)}.type: unknown type {name!r}; {stage} types: {', '.join(types)}")
    return types[name]


def stage_classes(types: Mapping[str, str | None] | None = None) -> tuple[type[Step], ...]:
    """Each expert stage's class in plan order: the type ``types`` names for the stage, else its default.

    What later steps and the card take from the experts (their cues, QA context and coverage) comes
    from these classes, also for a stage a run leaves out (its columns may come with the input).
    """
    types = types or {}
    return tuple(step_class(stage, types.get(stage)) for stage in EXPERT_STAGES)


def build_step(stage: str, options: Mapping[str, Any], experts: Sequence[type[Step]] | None = None) -> Step:
    """The step of ``stage`` configured by ``options`` (its ``type`` and its config's fields), in a plan whose
    expert stages run ``experts`` (default: :func:`stage_classes`)."""
    options = dict(options)
    name = options.pop("type", None)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{section(stage)}.type: expected a string, got {name!r}")
    cls = step_class(stage, name)
    backend = options.get("backend")
    if isinstance(backend, Mapping) and "model" not in backend:  # a served expert serves its own model
        own = options.get("model", getattr(cls.config_class, "model", None))  # the config's default model
        options["backend"] = {**backend, "model": own}
    return cls.for_plan(from_mapping(cls.config_class, options, section(stage)), experts)
