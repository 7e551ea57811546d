"""QA pairs from each kept caption: the paper's ~4.4 question-answer pairs per clip.

:class:`QAGenerator` asks the LLM (versioned prompt ``qa_v1``) for 4-5 pairs of several types per
captioned clip that the CLAP filter kept (where the plan has one), and keeps only the pairs that pass
:func:`~fusion_datasets.llm.parsing.validate_qa_pairs`; :func:`explode_qa` turns the per-clip lists into the
``qa`` config, one row per pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from fusion_datasets.llm.parsing import ParseError, parse_qa_answer, validate_qa_pairs
from fusion_datasets.llm.step import LLM_USAGE, PROVENANCE, ChatStepConfig, CueStep
from fusion_datasets.media import MediaBatch
from fusion_datasets.prompts import read_prompt
from fusion_datasets.registry import register, stage_classes
from fusion_datasets.steps import Step

if TYPE_CHECKING:
    import datasets

QA_TYPES = (
    "sound_sources",
    "counting_and_order",
    "acoustic_scene",
    "music_attributes",
    "speech_and_emotion",
    "reasoning",
)
QA_COLUMNS = ("id", "clip_id", "question", "answer", "qa_type")
FILTER_DECISION = "clap_keep"  # the CLAP filter's verdict on a caption; QA asks nothing of one it removes
QAResult = tuple[list[dict[str, str]], list[str]]  # the kept pairs, the reasons others were rejected


@dataclass(frozen=True)
class QAConfig(ChatStepConfig):
    """Options of :class:`QAGenerator`; an answer keeping fewer than ``min_pairs`` pairs is re-asked."""

    prompt: str = read_prompt("qa_v1")
    prompt_version: str = "qa_v1"
    placeholder: ClassVar[str] = "{clip_json}"
    max_new_tokens: int = 1024
    qa_types: tuple[str, ...] = QA_TYPES
    min_pairs: int = 1
    min_grounding: float = 0.5  # the share of a pair's content words found in the caption or cues

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_pairs < 1:
            raise ValueError(f"min_pairs must be >= 1, got {self.min_pairs}")
        if not 0.0 <= self.min_grounding <= 1.0:
            raise ValueError(f"min_grounding must be between 0 and 1, got {self.min_grounding}")


def qa_context(row: Mapping[str, Any], experts: Sequence[type[Step]] | None = None) -> dict[str, str]:
    """What the QA prompt shows of a clip, and what its answers must be grounded in.

    The caption, then the cues it came from that each of ``experts`` (default: each stage's default)
    shows (:meth:`~fusion_datasets.steps.Step.qa_context`): the built-in experts show the audio
    cues; the transcript and the video stay out (answers must neither quote speech nor describe what is seen).

    Example:
        >>> qa_context({"caption": "A dog barks.", "audio_tags": [{"label": "Dog", "score": 0.9}]})
        {'caption': 'A dog barks.', 'audio tags': 'Dog'}
    """
    context = {"caption": row["caption"]}
    for expert in stage_classes() if experts is None else experts:
        context.update(expert.qa_context(row))
    return context


@register("qa", "llm")
class QAGenerator(CueStep[QAConfig]):
    """Writes ``qa_pairs`` (``[{question, answer, qa_type}]``), ``qa_rejected`` and ``provenance``.

    ``qa_rejected`` says why each pair the model wrote but validation left out was left out.

    Only rows with a ``caption`` that the CLAP filter did not remove (``clap_keep`` not false) are asked; the
    others get ``None`` (a removed caption never reaches ``captions``, so its pairs would never reach ``qa``;
    the output counts them as ``qa_skipped``). The filter's decision is read like a cue: a new threshold
    reruns QA. Rows that already have pairs (an earlier run) are kept, so a rerun asks again only for the
    clips that failed.

    Example (the tiny zoo's QA LM answers fixed pairs):
        >>> from datasets import Dataset
        >>> from fusion_datasets.chat.backends import TransformersBackendConfig
        >>> captions = Dataset.from_dict({"id": ["dog"], "caption": ["A dog barks twice."], "clap_keep": [True]})
        >>> qa = QAGenerator(backend=TransformersBackendConfig(model=str(tiny_zoo["qa-lm"])))
        >>> answered = captions.map(qa, batched=True, with_rank=True, features=qa.output_features(captions.features))
        >>> pairs = explode_qa(answered)
        >>> pairs[:]["id"], pairs[:]["question"]
        (['dog-0', 'dog-1'], ['What barks?', 'How many times does the dog bark?'])
    """

    stage = "qa"
    config_class = QAConfig
    answer_format = 'the JSON object {"qa_pairs": [{"question": "...", "answer": "...", "qa_type": "..."}]}'

    def result_features(self) -> dict[str, Any]:
        from datasets import List, Value

        pair = {"question": Value("string"), "answer": Value("string"), "qa_type": Value("string")}
        rejected = List(Value("string"))
        return {"qa_pairs": List(pair), "qa_rejected": rejected}

    def reads(self) -> tuple[str, ...]:
        return ("caption", FILTER_DECISION, *(column for expert in self.experts for column in expert.qa_columns()))

    def data_counts(self, cues: Any) -> dict[str, Any]:
        """Where the filter ran: the captions it removed, which QA asked nothing of (``qa_skipped``)."""
        if FILTER_DECISION not in cues.column_names:
            return {}
        import pyarrow.compute as pc

        table = cues.select_columns(["caption", FILTER_DECISION, "qa_pairs"]).with_format("arrow")[:]
        removed = pc.and_(pc.is_valid(table["caption"]), pc.equal(table[FILTER_DECISION], False))
        return {"qa_skipped": pc.sum(pc.and_(removed, pc.is_null(table["qa_pairs"]))).as_py() or 0}

    def pending_rows(self, media: MediaBatch) -> list[int]:
        captions, pairs = media.column("caption"), media.column("qa_pairs")
        removed = set(self.removed_rows(media))
        return [row for row in range(media.size)
                if captions[row] is not None and pairs[row] is None and row not in removed]

    def removed_rows(self, media: MediaBatch) -> list[int]:
        """Rows whose caption the CLAP filter removed (none in a plan without the filter)."""
        captions, kept = media.column("caption"), media.column(FILTER_DECISION)
        return [row for row in range(media.size) if captions[row] is not None and kept[row] is False]

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        """The chat step's, and no QA entry in the provenance and usage of a caption the filter removed: one
        left by a run that asked before the filter changed its mind no longer describes the row's pairs."""
        outputs = super().process(media, rank)
        for row in self.removed_rows(media):
            for column in (PROVENANCE, LLM_USAGE):
                entries = outputs[column][row]
                if entries:
                    outputs[column][row] = [entry for entry in entries if entry["stage"] != self.stage]
        return outputs

    def prompt_data(self, media: MediaBatch, row: int) -> dict[str, Any]:
        return qa_context(self.row_values(media, row), self.experts)

    def parse(self, media: MediaBatch, row: int, text: str) -> QAResult:
        pairs = parse_qa_answer(text)
        sources = self.prompt_data(media, row).values()
        kept, rejected = validate_qa_pairs(pairs, sources, self.config.qa_types, self.config.min_grounding)
        if len(kept) < self.config.min_pairs:
            raise ParseError(f"{len(kept)} usable pairs of {len(pairs)} ({'; '.join(rejected)})")
        return kept, rejected

    def store(self, outputs: dict[str, list], row: int, result: QAResult) -> None:
        outputs["qa_pairs"][row], outputs["qa_rejected"][row] = result


def explode_qa(dataset: datasets.Dataset) -> datasets.Dataset:
    """The ``qa`` config: one row (``id``, ``clip_id``, ``question``, ``answer``, ``qa_type``) per pair.

    ``id`` is the clip's id and the pair's index (``clip-7-0``); clips without pairs add no row.
    """
    from datasets import Dataset, Features, Value

    features = Features({column: Value("string") for column in QA_COLUMNS})
    if dataset.num_rows == 0:  # map over no rows would keep the input's columns
        return Dataset.from_dict({column: [] for column in QA_COLUMNS}, features=features)

    def explode(batch: dict[str, list]) -> dict[str, list]:
        rows: dict[str, list] = {column: [] for column in QA_COLUMNS}
        for clip_id, pairs in zip(batch["id"], batch["qa_pairs"]):
            for index, pair in enumerate(pairs or []):
                rows["id"].append(f"{clip_id}-{index}")
                rows["clip_id"].append(clip_id)
                for column in ("question", "answer", "qa_type"):
                    rows[column].append(pair[column])
        return rows

    return dataset.select_columns(["id", "qa_pairs"]).map(
        explode,
        batched=True,
        remove_columns=["id", "qa_pairs"],
        features=features,
        desc="QA pairs to rows",
    )
