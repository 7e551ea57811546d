"""Several experts over one batch, sharing its decoded audio and separated tracks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fusion_datasets import __version__
from fusion_datasets.media import MediaBatch
from fusion_datasets.steps import ERRORS, Step, merge_features

COUNTERS = "_counters"  # each row's share of the counters per stage, as JSON (for the executor's stats)
DECODE = "decode"  # the stage name of the errors of clips that cannot be decoded


def stage_errors(errors: Sequence[Sequence[Mapping[str, str]] | None], stage: str) -> int:
    """The rows whose ``errors`` hold an error of ``stage``."""
    return sum(any(error["stage"] == stage for error in row or []) for row in errors)


class ExpertChain:
    """Run ``experts`` in order on each batch; one decode and one resample per rate serve them all.

    Experts that read another audio column (the CLAP filter's ``audio_column``) get their own view of
    the batch, which shares the rows' errors. With ``record_counters`` the chain also writes
    ``_counters``: each row's share, per stage, of the rows, the rows with an error of the stage, the
    seconds (the batch's, split evenly) and the expert's own
    :meth:`~fusion_datasets.steps.Step.counters`, as JSON, so the counts of any set of rows
    (a part, whichever batches and processes made it) add up.

    ``max_seconds`` (``input.max_seconds``) bounds the whole files the chain decodes.

    Example:
        >>> import datasets
        >>> from fusion_datasets.experts.speech import WhisperTranscriber
        >>> from fusion_datasets.experts.tagging import ASTAudioTagger
        >>> from fusion_datasets.synthetic import speech, write_audio
        >>> ds = datasets.Dataset.from_dict({"audio": [str(write_audio("speech.wav", speech(2.0, 16000), 16000))]})
        >>> chain = ExpertChain([ASTAudioTagger(model=str(tiny_zoo["ast-audioset"])),
        ...                      WhisperTranscriber(model=str(tiny_zoo["whisper"]), max_new_tokens=4)])
        >>> ds.map(chain, batched=True, with_rank=True).column_names
        ['audio', 'audio_tags', 'music_score', 'asr_text', 'asr_language', 'asr_no_speech_prob', 'has_speech', 'errors']
    """

    def __init__(self, experts: Sequence[Step], record_counters: bool = False,
                 max_seconds: float | None = None) -> None:
        self.experts = list(experts)
        self.record_counters = record_counters
        self.max_seconds = max_seconds

    def features(self) -> dict[str, Any]:
        """The ``datasets`` feature of every column the chain writes (``errors`` aside)."""
        from datasets import Value

        features = {name: feature for expert in self.experts for name, feature in expert.features().items()}
        return {**features, COUNTERS: Value("string")} if self.record_counters else features

    def output_features(self, input_features: Any) -> Any:
        """The features of ``ds.map(self, ...)`` over a dataset with ``input_features``."""
        return merge_features(input_features, self.features())

    def __getstate__(self) -> dict[str, Any]:
        return {"experts": self.experts, "record_counters": self.record_counters, "max_seconds": self.max_seconds,
                "version": __version__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.experts = state["experts"]
        self.record_counters = state["record_counters"]
        self.max_seconds = state.get("max_seconds")

    def __call__(self, batch: Mapping[str, Sequence[Any]], rank: int | None = None) -> dict[str, list]:
        views: dict[str, MediaBatch] = {}
        outputs: dict[str, list] = {}
        counters: list[dict[str, dict[str, float]]] = [{} for _ in range(len(next(iter(batch.values()), [])))]
        errors = None
        for expert in self.experts:
            media = views.get(expert.audio_column)
            if media is None:
                media = views[expert.audio_column] = MediaBatch(batch, expert.audio_column, self.max_seconds)
                if errors is None:
                    errors = media.errors
                media.errors = errors  # one list of errors per row, whichever view records them
            # later experts read earlier ones' columns (the music gate reads the tagger's music_score)
            media.batch = {**batch, **outputs}
            started = time.perf_counter()
            produced = expert.process(media, rank)
            seconds = (time.perf_counter() - started) / max(media.size, 1)
            outputs.update(produced)
            for row, counts in enumerate(counters):
                own = expert.counters({column: values[row:row + 1] for column, values in produced.items()})
                counts[expert.stage] = {"rows": 1, "errors": stage_errors(errors[row:row + 1], expert.stage),
                                        "seconds": seconds, **own}
        outputs[ERRORS] = errors if errors is not None else [list(row or []) for row in batch.get(ERRORS, [])]
        if self.record_counters:
            decoded = any(media.decoded for media in views.values())
            for row, counts in enumerate(counters):
                if decoded:
                    counts[DECODE] = {"rows": 1, "errors": stage_errors(outputs[ERRORS][row:row + 1], DECODE)}
            outputs[COUNTERS] = [json.dumps(counts) for counts in counters]
        return outputs
