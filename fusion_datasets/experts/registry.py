"""Which class runs each expert stage: ``experts.<stage>.type`` in a pipeline config names one.

Built-in experts register themselves with :func:`register`; another package adds one through the
entry point group ``fusion_datasets.steps``, an entry named ``<stage>.<type>`` pointing at the class
(an :class:`~fusion_datasets.experts.base.Expert` subclass whose ``stage`` is that stage). A stage
without ``type`` runs its default (:data:`DEFAULTS`), so a config written before types existed runs the
same steps, with the same fingerprints.

Example:
    >>> step_class("tagging", "ast").__name__
    'ASTAudioTagger'
    >>> build_step("tagging", {"type": "ast", "top_k": 5}).config.top_k
    5
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from fusion_datasets.config import ConfigError, from_mapping
from fusion_datasets.experts.base import Expert

# The expert stages in the plan's order (separation before speech, tagging before the music gate).
STAGES = ("separation", "speech", "tagging", "sound", "music", "visual")
DEFAULTS = {"separation": "htdemucs", "speech": "whisper", "tagging": "ast", "sound": "audio-llm",
            "music": "audio-llm", "visual": "video-llm"}
ENTRY_POINT_GROUP = "fusion_datasets.steps"
E = TypeVar("E", bound=type[Expert])

_TYPES: dict[str, dict[str, type[Expert]]] = {stage: {} for stage in STAGES}
_plugins_loaded = False


def register(stage: str, name: str) -> Callable[[E], E]:
    """A class decorator: ``stage``'s experts include the class, as ``type: name``."""

    def add(cls: E) -> E:
        if stage not in _TYPES:
            raise ValueError(f"{cls.__name__}: unknown expert stage {stage!r}; stages: {', '.join(STAGES)}")
        if cls.stage != stage:
            raise ValueError(f"{cls.__name__} is a {cls.stage!r} step, not a {stage!r} step")
        known = _TYPES[stage].setdefault(name, cls)
        if known is not cls:
            raise ValueError(f"experts.{stage}.type {name!r} is taken by {known.__module__}.{known.__name__}")
        return cls

    return add


def _load_plugins() -> None:
    """Register the entry points of ``fusion_datasets.steps`` (once per process)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        stage, _, name = entry.name.partition(".")
        register(stage, name)(entry.load())
    _plugins_loaded = True  # not before: a plugin that fails to load fails every lookup, not only the first


def step_types(stage: str) -> dict[str, type[Expert]]:
    """``stage``'s experts by type name."""
    _load_plugins()
    return dict(_TYPES[stage])


def step_class(stage: str, name: str | None = None) -> type[Expert]:
    """The expert class of ``experts.<stage>.type: name`` (``None``: the stage's default)."""
    types = step_types(stage)
    name = DEFAULTS[stage] if name is None else name
    if name not in types:
        raise ConfigError(f"experts.{stage}.type: unknown type {name!r}; {stage} types: {', '.join(types)}")
    return types[name]


def stage_classes(types: Mapping[str, str | None] | None = None) -> tuple[type[Expert], ...]:
    """Each stage's expert class in plan order: the type ``types`` names for the stage, else its default.

    What later steps and the card take from the experts (their cues, QA context and coverage) comes
    from these classes, also for a stage a run leaves out (its columns may come with the input).
    """
    types = types or {}
    return tuple(step_class(stage, types.get(stage)) for stage in STAGES)


def build_step(stage: str, options: Mapping[str, Any]) -> Expert:
    """The expert of ``stage`` configured by ``options``: its ``type`` and its config's fields."""
    options = dict(options)
    name = options.pop("type", None)
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"experts.{stage}.type: expected a string, got {name!r}")
    cls = step_class(stage, name)
    backend = options.get("backend")
    if isinstance(backend, Mapping) and "model" not in backend:  # a served expert serves its own model
        own = options.get("model", getattr(cls.config_class, "model", None))  # the config's default model
        options["backend"] = {**backend, "model": own}
    return cls(from_mapping(cls.config_class, options, f"experts.{stage}"))
