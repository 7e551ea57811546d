"""Typed configs from YAML mappings, with ``--set key=value`` overrides and errors that name the field.

Every config in the package is a frozen dataclass; :func:`from_mapping` builds one from plain data
(a parsed YAML file), checking each key and value against the dataclass' fields and types, so a
mistake reads ``steps.speech.max_new_tokens: expected an integer, got 'many'`` instead of a
traceback deep in a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from fusion_datasets.errors import UserError

T = TypeVar("T")


class ConfigError(UserError):
    """A config key or value that is not allowed; the message names the field, the value and what is allowed."""


def resource(default: Any) -> Any:
    """A config field that says how a step runs (device, batch size, server addresses), not what it computes:
    it stays out of the step's fingerprint, so changing it never reruns a stage."""
    return dataclasses.field(default=default, metadata={"resource": True})


def is_resource(item: dataclasses.Field) -> bool:
    """Whether a dataclass field was declared with :func:`resource`."""
    return bool(item.metadata.get("resource"))


def _describe(kind: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _convert(value: Any, kind: Any, field: str) -> Any:
    """``value`` checked against the type annotation ``kind`` (and converted where YAML is loose)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (option for option in options if option is not type(None)):
            try:
                return _convert(value, option, field)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{field}: {value!r} matches none of {kind}")
    if origin is typing.Literal:
        allowed = typing.get_args(kind)
        if value not in allowed:
            raise ConfigError(f"{field}: {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")
        return value
    if dataclasses.is_dataclass(kind):
        return from_mapping(kind, value, field)
    if origin in (tuple, list, Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{field}: expected a list, got {value!r}")
        (item,) = typing.get_args(kind)[:1] or (Any,)
        return tuple(_convert(element, item, f"{field}[{index}]") for index, element in enumerate(value))
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{field}: expected a mapping, got {value!r}")
        return dict(value)
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)  # PyYAML (YAML 1.1) reads a number without a dot, like 1e-5, as a string
    if kind in (int, float) and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{field}: expected {_describe(kind)}, got {value!r}")
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, field: str = "") -> T:
    """Build the dataclass ``cls`` from ``data``; unknown keys and ill-typed values raise :class:`ConfigError`.

    A ``cls`` with a ``kind_class(data)`` classmethod is a family of configs (the chat backends): the
    member it returns for ``data`` is built, with that member's own fields.
    """
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{field or cls.__name__}: expected a mapping, got {data!r}")
    if hasattr(cls, "kind_class"):  # a family of configs: the data's ``kind`` picks the member
        try:
            cls = cls.kind_class(data)
        except ValueError as error:
            raise ConfigError(f"{field or cls.__name__}: {error}") from error
    hints = typing.get_type_hints(cls)
    fields = {item.name for item in dataclasses.fields(cls) if item.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        where = f"{field}." if field else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; allowed: {', '.join(sorted(fields))}")
    values = {key: _convert(value, hints[key], f"{field}.{key}" if field else key) for key, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{field or cls.__name__}: {error}") from error


def to_mapping(config: Any) -> Any:
    """Plain data (dicts, lists, scalars) of a config, ready for ``yaml.safe_dump``."""
    if dataclasses.is_dataclass(config):
        return {item.name: to_mapping(getattr(config, item.name)) for item in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {key: to_mapping(value) for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_mapping(value) for value in config]
    return config


def parse_override(override: str) -> tuple[str, Any]:
    """``key=value`` as ``(key, value)``, the value parsed as YAML (``true``, ``0.1``, ``[a, b]``, ``{k: v}``).

    A mapping is written in braces: a value that YAML reads as ``key: value`` without them, or cannot read at
    all, is a text that holds ``: `` (a prompt's "Answer: yes"), and is taken as it is.

    Example:
        >>> parse_override("steps.speech.batch_size=8")
        ('steps.speech.batch_size', 8)
        >>> parse_override("fusion.prompt=Cues: {cues_json}. Answer: one sentence.")
        ('fusion.prompt', 'Cues: {cues_json}. Answer: one sentence.')
    """
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {override!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return key, raw
    return key, raw if isinstance(value, dict) and not raw.lstrip().startswith("{") else value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with ``key.sub=value`` overrides (:func:`parse_override`) applied."""
    result = yaml.safe_load(yaml.safe_dump(data)) or {}
    for key, value in map(parse_override, overrides):
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: depth + 1])} is {child!r}, not a mapping")
            node = child
        node[parts[-1]] = value
    return result
