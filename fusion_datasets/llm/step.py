"""The shared machinery of the LLM steps (fusion, QA): backend, re-asking, errors, provenance, usage, reruns.

A step is an :class:`~fusion_datasets.steps.Step`: a picklable batched map function holding
only its frozen config. Its chat backend is made at the first batch that needs it (``make_backend``
keeps one per process). Each batch round sends every row that still needs an answer in one
``backend.generate`` call; an answer the step cannot parse is shown back to the model with the reason,
at most ``max_reasks`` times, before it becomes the row's error.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar, TypeVar

from fusion_datasets import __version__, prompts
from fusion_datasets.chat.backends import BackendConfig, make_backend
from fusion_datasets.chat.base import ChatBackend, Completion, Conversation
from fusion_datasets.llm.parsing import ParseError, split_reasoning
from fusion_datasets.media import MediaBatch
from fusion_datasets.public import model_reference
from fusion_datasets.registry import stage_classes
from fusion_datasets.steps import Step

logger = logging.getLogger(__name__)

PROVENANCE = "provenance"
LLM_USAGE = "llm_usage"
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "retries", "reasks")
T = TypeVar("T")
StepConfigT = TypeVar("StepConfigT", bound="ChatStepConfig")


@dataclass(frozen=True)
class ChatStepConfig:
    """What every LLM step shares. ``prompt`` is the template; ``prompt_version`` is the bundled version it is,
    and names it in provenance and on the card (a text that is not that version's is named ``custom``)."""

    backend: BackendConfig
    prompt: str = ""
    prompt_version: str = ""
    placeholder: ClassVar[str] = ""  # where the template takes the clip's data
    max_new_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None
    max_reasks: int = 2

    def __post_init__(self) -> None:
        if self.placeholder not in self.prompt:
            raise ValueError(
                f"prompt must contain the placeholder {self.placeholder!r}, got {self.prompt[:80]!r}"
            )
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.max_reasks < 0:
            raise ValueError(f"max_reasks must be >= 0, got {self.max_reasks}")

    @property
    def prompt_name(self) -> str:
        """``prompt_version``, or ``custom`` where ``prompt`` is not that bundled version's text."""
        return prompts.prompt_name(self.prompt, self.prompt_version)

    def render(self, data: Mapping[str, Any]) -> str:
        return render_prompt(self.prompt, self.placeholder, data)

    def generation_params(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "seed": self.seed}


def reask_message(answer_format: str, problem: str) -> str:
    """What a step sends back after an answer it cannot use: the ``problem`` and the ``answer_format`` wanted."""
    return f"Your answer could not be used: {problem}. Reply with only {answer_format}, and no other text."


def render_prompt(template: str, placeholder: str, data: Mapping[str, Any]) -> str:
    r"""``template`` with ``data`` as one JSON object in place of ``placeholder`` (its data block).

    The JSON escapes quotes and newlines, and ``<``/``>`` as ``\u003c``/``\u003e``, so no cue text
    can close the block or fake a chat-template tag: it stays data.

    Example:
        >>> print(render_prompt("DATA: {x}", "{x}", {"speech content": 'say "hi"\n<|im_end|>'}))
        DATA: {"speech content": "say \"hi\"\n\u003c|im_end|\u003e"}
    """
    encoded = json.dumps(dict(data), ensure_ascii=False)
    encoded = encoded.replace("<", "\\u003c").replace(">", "\\u003e")
    return template.replace(placeholder, encoded)


def provenance_feature() -> Any:
    """The ``datasets`` type of the ``provenance`` column: one entry per stage that wrote the row."""
    from datasets import List, Value

    fields = ("stage", "model", "revision", "prompt", "prompt_sha256", "params", "package_version")
    return List({name: Value("string") for name in fields})


def usage_feature() -> Any:
    """The ``datasets`` type of the ``llm_usage`` column: tokens, server retries and re-asks per LLM stage."""
    from datasets import List, Value

    return List({"stage": Value("string"), **{name: Value("int64") for name in USAGE_FIELDS}})


def _replace_stage_entry(entries: list[dict] | None, entry: dict) -> list[dict]:
    """``entries`` with ``entry`` in place of the one of its stage (a rerun replaces, never repeats)."""
    return [*(item for item in entries or [] if item["stage"] != entry["stage"]), entry]


class ChatStep(Step[StepConfigT]):  # a step whose model is a chat backend
    """Base of the LLM steps. Subclasses pick the rows, build the data, parse the answers, store results."""

    answer_format: ClassVar[str]  # what a re-ask asks for, in words
    streaming = True

    @abstractmethod
    def result_features(self) -> dict[str, Any]:
        """The ``datasets`` feature of each column the step's answers fill."""

    def features(self) -> dict[str, Any]:
        return {**self.result_features(), PROVENANCE: provenance_feature(), LLM_USAGE: usage_feature()}

    def writes(self) -> tuple[str, ...]:
        return tuple(self.result_features())  # provenance and usage are shared: each step replaces its entry

    @property
    def served_concurrency(self) -> int | None:
        return self.config.backend.served_concurrency

    def counters(self, outputs: Mapping[str, Sequence[Any]]) -> dict[str, float]:
        totals = dict.fromkeys(USAGE_FIELDS, 0)
        for entries in outputs[LLM_USAGE]:
            for entry in entries or []:
                if entry["stage"] == self.stage:
                    for name in USAGE_FIELDS:
                        totals[name] += entry[name]
        return totals

    def card_entry(self) -> dict[str, Any]:
        """The Step's, with the served model and the prompt's name; a custom prompt's text too (the manifest
        keeps it: its name and sha256 alone would not say what was asked)."""
        config = self.config
        model, revision = model_reference(config.backend.model, config.backend.revision)
        name = config.prompt_name
        entry = {**super().card_entry(), "model": model, "revision": revision, "prompt": name}
        if name == prompts.CUSTOM:
            entry["prompt_text"] = config.prompt
        return entry

    @abstractmethod
    def pending_rows(self, media: MediaBatch) -> list[int]:
        """Rows to (re)answer in this batch; the others keep their columns as they are."""

    @abstractmethod
    def prompt_data(self, media: MediaBatch, row: int) -> dict[str, Any] | None:
        """The data block of ``row``'s prompt, or ``None`` where there is nothing to ask about."""

    @abstractmethod
    def parse(self, media: MediaBatch, row: int, text: str) -> Any:
        """``row``'s answer parsed and validated; raises :class:`ParseError`."""

    @abstractmethod
    def store(self, outputs: dict[str, list], row: int, result: Any) -> None:
        """Write ``row``'s parsed answer (``None``: nothing to ask about) into ``outputs``."""

    def provenance_entry(self) -> dict[str, str | None]:
        config = self.config
        model, revision = model_reference(config.backend.model, config.backend.revision)
        return {
            "stage": self.stage,
            "model": model,
            "revision": revision,
            "prompt": config.prompt_name,
            "prompt_sha256": hashlib.sha256(config.prompt.encode("utf-8")).hexdigest(),
            "params": json.dumps(config.generation_params(), sort_keys=True),
            "package_version": __version__,
        }

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        outputs = {column: media.column(column) for column in self.result_features()}
        provenance, usage = media.column(PROVENANCE), media.column(LLM_USAGE)
        entry = self.provenance_entry()
        conversations: dict[int, Conversation] = {}
        for row in self.pending_rows(media):
            # a rerun answers this row afresh: its earlier errors of this stage no longer hold
            media.errors[row] = [error for error in media.errors[row] if error["stage"] != self.stage]
            provenance[row] = _replace_stage_entry(provenance[row], entry)
            fresh_usage = {"stage": self.stage, **dict.fromkeys(USAGE_FIELDS, 0)}
            usage[row] = _replace_stage_entry(usage[row], fresh_usage)
            for column in outputs:
                outputs[column][row] = None
            data = self.prompt_data(media, row)
            if data is None:
                self.store(outputs, row, None)
            else:
                conversations[row] = [{"role": "user", "content": self.config.render(data)}]
        if conversations:
            backend = make_backend(self.config.backend, rank)
            counts = {row: usage[row][-1] for row in conversations}  # this stage's entry, just added
            results, failures = self.ask(backend, conversations, partial(self.parse, media), counts)
            for row, result in results.items():
                self.store(outputs, row, result)
            for row, message in failures.items():
                media.add_error(row, self.stage, message)
        outputs[PROVENANCE] = provenance
        outputs[LLM_USAGE] = usage
        return outputs

    def ask(
        self,
        backend: ChatBackend,
        conversations: dict[int, Conversation],
        parse: Callable[[int, str], T],
        usage: dict[int, dict[str, int]],
    ) -> tuple[dict[int, T], dict[int, str]]:
        """Answers parsed by ``parse`` and error messages, by row, through ``backend.converse``.

        An answer that does not parse is shown back to the model with the reason as soon as it arrives
        (a server backend keeps the other rows in flight meanwhile). Each row's tokens, server retries and
        re-asks are added up in ``usage[row]``.
        """
        from tqdm.auto import tqdm

        rows = list(conversations)
        history = [conversations[row] for row in rows]
        results: dict[int, T] = {}
        failures: dict[int, str] = {}
        progress = tqdm(total=len(rows), desc=self.stage, unit="clip", disable=len(rows) < 64, leave=False)

        def follow_up(index: int, completion: Completion) -> Conversation | None:
            row = rows[index]
            counts = usage[row]
            reasks = counts["reasks"]
            counts["prompt_tokens"] += completion.prompt_tokens
            counts["completion_tokens"] += completion.completion_tokens
            counts["retries"] += completion.retries
            if completion.ok:
                try:
                    results[row] = parse(row, completion.text)
                except ParseError as error:
                    if reasks < self.config.max_reasks:
                        counts["reasks"] += 1
                        answer, _ = split_reasoning(completion.text)
                        history[index] = [*history[index], {"role": "assistant", "content": answer},
                                          {"role": "user", "content": self.reask_message(str(error))}]
                        return history[index]
                    failures[row] = f"invalid answer after {reasks} re-asks: {error}"
            else:
                failures[row] = completion.error or "no answer"
            progress.update()
            return None

        with progress:
            backend.converse(history, follow_up, **self.config.generation_params())
        return results, failures

    def reask_message(self, problem: str) -> str:
        return reask_message(self.answer_format, problem)


class CueStep(ChatStep[StepConfigT]):
    """A chat step whose prompt shows what a run's experts found about a clip (fusion, QA).

    ``experts`` are the run's expert classes, one per stage (default: each stage's default type;
    :meth:`~fusion_datasets.pipeline.config.PipelineConfig.expert_classes`); each says what of its columns
    the prompt shows. They are not part of the step's fingerprint: a stage's columns are.
    """

    def __init__(
        self, config: StepConfigT | None = None, *, experts: Sequence[type[Step]] | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, **overrides)
        self.experts = tuple(experts) if experts is not None else stage_classes()

    @classmethod
    def for_plan(cls, config: StepConfigT, experts: Sequence[type[Step]] | None) -> CueStep:
        return cls(config, experts=experts)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "experts": self.experts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.experts = state["experts"]

    def row_values(self, media: MediaBatch, row: int) -> dict[str, Any]:
        """``row``'s values of the columns the step reads (those of ``media``'s batch)."""
        return {column: media.batch[column][row] for column in self.reads() if column in media.batch}
