"""Experts whose model answers from an OpenAI-compatible server: the clip goes in the request.

A generative expert (sound, music, visual) with ``backend: {kind: server, ...}`` sends its prompt with the
clip as content parts of one chat message, through the same backend as the LLM stages
(:class:`~fusion_datasets.chat.backends.ServerChatBackend`: ``max_concurrency`` requests in flight, retries,
timeouts, a token only where ``token_env`` names one). The audio is decoded, resampled to the served model's
rate, cut to the expert's ``max_seconds`` and encoded (WAV or FLAC, base64); video frames go as JPEG images.

Which content part a server takes for audio (:data:`AUDIO_PARTS`) is a setting; each model family has a
default (:data:`FAMILIES`): vLLM and ``transformers serve`` take OpenAI's ``input_audio``, SGLang an
``audio_url`` holding a data URL.

Example:
    >>> part = audio_part(np.zeros(1600, dtype=np.float32), 16000, "audio_url", "wav")
    >>> part["type"], part["audio_url"]["url"][:22]
    ('audio_url', 'data:audio/wav;base64,')
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_datasets.chat.backends import BackendConfig, ServerBackendConfig, make_backend
from fusion_datasets.config import resource
from fusion_datasets.media import MediaBatch
from fusion_datasets.public import model_reference

AUDIO_PARTS = ("input_audio", "audio_url")
AUDIO_FORMATS = ("wav", "flac")
# the options that only say how a served expert's request is made
SERVED_FIELDS = frozenset({"backend", "max_request_bytes", "sampling_rate", "audio_part", "audio_format", "frame_size"})


@dataclass(frozen=True)
class ServedAudio:
    """What a served audio model family takes: its sampling rate and the audio content part."""

    sampling_rate: int = 16000
    audio_part: str = "input_audio"


# model-name fragment (lower case) -> the family's defaults, where they are not ServedAudio()'s (16 kHz,
# input_audio: Qwen2-Audio, the Qwen omni models, Voxtral, Gemma 3n, Phi-4-multimodal, Granite Speech)
FAMILIES: dict[str, ServedAudio] = {
    "audio-flamingo": ServedAudio(16000, "audio_url"),
    "music-flamingo": ServedAudio(16000, "audio_url"),
}


def served_audio(model: str, sampling_rate: int | None = None, part: str | None = None) -> ServedAudio:
    """The family defaults of the served ``model`` with the options a config sets over them.

    Example:
        >>> served_audio("Qwen/Qwen2-Audio-7B-Instruct", part="audio_url")
        ServedAudio(sampling_rate=16000, audio_part='audio_url')
    """
    name = model.lower()
    family = next((family for fragment, family in FAMILIES.items() if fragment in name), ServedAudio())
    return ServedAudio(sampling_rate or family.sampling_rate, part or family.audio_part)


@dataclass(frozen=True, kw_only=True)
class ServedOptions:
    """The options of an expert that can answer from a server: ``backend`` (``kind: server``; ``None``: the
    expert's own model runs in this process) and the largest request it sends (a larger one is the row's
    error: size the server's request limit above it)."""

    backend: BackendConfig | None = None
    max_request_bytes: int = resource(16 * 2**20)

    def check_served(self) -> None:  # not __post_init__: the expert configs' own chain does not reach it
        """Raise ``ValueError`` where these options cannot work (call from ``__post_init__``)."""
        if self.backend is not None and not isinstance(self.backend, ServerBackendConfig):
            raise ValueError("backend: an expert runs in this process with its own model, device and dtype "
                             f"options, or on a server with backend.kind server; got kind {self.backend.kind!r}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")


class ServedExpert:
    """What an expert whose config has :class:`ServedOptions` does differently when it is served: its
    executor overlaps calls up to the server's concurrency, a map batch holds four times as many clips (the
    backend keeps ``max_concurrency`` of them in flight), and the card names the served model."""

    config: Any

    def fingerprint_settings(self) -> dict[str, Any]:
        settings = super().fingerprint_settings()  # type: ignore[misc]
        if self.config.backend is None:  # in process: the fingerprint it had before experts could be served
            settings = {name: value for name, value in settings.items() if name not in SERVED_FIELDS}
        return settings

    @property
    def served_concurrency(self) -> int | None:
        backend = self.config.backend
        return backend.max_concurrency if backend is not None else None

    @property
    def batch_size(self) -> int | None:
        backend = self.config.backend
        return 4 * backend.max_concurrency if backend is not None else super().batch_size  # type: ignore[misc]

    def card_entry(self) -> dict[str, Any]:
        entry = super().card_entry()  # type: ignore[misc]  # the Step's, next in the class's order
        backend = self.config.backend
        if backend is not None:
            model, revision = model_reference(backend.model, backend.revision)
            entry.update(model=model, revision=revision, served=True)
        return entry


def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def audio_part(samples: np.ndarray, sampling_rate: int, part: str, audio_format: str) -> dict[str, Any]:
    """Mono ``samples`` as a chat content part: 16-bit WAV or FLAC, base64, as ``part`` wants it."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), sampling_rate, format=audio_format.upper(),
                    subtype="PCM_16")
    data = _base64(buffer.getvalue())
    if part == "input_audio":
        return {"type": "input_audio", "input_audio": {"data": data, "format": audio_format}}
    return {"type": "audio_url", "audio_url": {"url": f"data:audio/{audio_format};base64,{data}"}}


def image_part(frame: np.ndarray, longest_edge: int) -> dict[str, Any]:
    """An RGB ``frame`` (height, width, 3) as an ``image_url`` part: JPEG, at most ``longest_edge`` pixels wide
    or high (never enlarged)."""
    from PIL import Image

    image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    image.thumbnail((longest_edge, longest_edge))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{_base64(buffer.getvalue())}"}}


def ask_server(
    options: ServedOptions,
    media: MediaBatch,
    stage: str,
    requests: Mapping[int, Sequence[dict[str, Any]]],
    max_new_tokens: int,
) -> dict[int, str]:
    """Each row's answer to its request (content parts of one user message), all in flight at once up to the
    backend's ``max_concurrency``; a request over ``max_request_bytes`` or one that fails for good is the
    row's recorded error."""
    backend = options.backend
    assert isinstance(backend, ServerBackendConfig)  # checked when the config was made
    conversations: dict[int, list[dict[str, Any]]] = {}
    for row, parts in requests.items():
        size = len(json.dumps(parts))
        if size > options.max_request_bytes:
            media.add_error(row, stage, f"request of {size} bytes is over max_request_bytes "
                                        f"({options.max_request_bytes}): not sent")
        else:
            conversations[row] = [{"role": "user", "content": list(parts)}]
    if not conversations:
        return {}
    rows = list(conversations)
    completions = make_backend(backend).generate(list(conversations.values()), max_new_tokens=max_new_tokens)
    answers: dict[int, str] = {}
    for row, completion in zip(rows, completions):
        if completion.ok:
            answers[row] = completion.text.strip()
        else:
            media.add_error(row, stage, f"{backend.model} (served): {completion.error}")
    return answers
