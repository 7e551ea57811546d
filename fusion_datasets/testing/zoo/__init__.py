"""A zoo of tiny random-weight models, built offline and saved like Hub checkpoints.

Each entry is a folder that the code under test loads by path with the same ``from_pretrained``
call it uses for the real Hub model, so tests exercise the real loading and inference code.

Example:
    >>> from transformers import ASTForAudioClassification
    >>> path = build_tiny_model("ast-audioset", tiny_zoo.root)  # built once, then reused
    >>> ASTForAudioClassification.from_pretrained(path).config.num_labels  # AudioSet's labels
    527
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

# name -> "module:function"; builders are imported lazily so that importing the zoo stays cheap.
_BUILDERS: dict[str, str] = {
    "whisper": "speech:build_tiny_whisper",
    "ast-audioset": "tagging:build_tiny_ast",
    "wav2vec2-audioset": "tagging:build_tiny_wav2vec2",
    "clap": "clap:build_tiny_clap",
    "clap-trainable": "clap:build_trainable_clap",
    "htdemucs": "separation:build_tiny_htdemucs",
    "chat-lm": "chat:build_tiny_chat_lm",
    "fusion-lm": "fixed_answer:build_tiny_fusion_lm",
    "qa-lm": "fixed_answer:build_tiny_qa_lm",
    "judge-lm": "fixed_answer:build_tiny_judge_lm",
    "qwen2-audio": "audio_lm:build_tiny_qwen2_audio",
    "audioflamingo3": "audio_lm_families:build_tiny_audioflamingo3",
    "musicflamingo": "audio_lm_families:build_tiny_musicflamingo",
    "qwen2.5-omni": "audio_lm_families:build_tiny_qwen2_5_omni",
    "qwen3-omni": "audio_lm_families:build_tiny_qwen3_omni",
    "granite-speech": "audio_lm_families:build_tiny_granite_speech",
    "qwen2.5-vl": "vision:build_tiny_qwen2_5_vl",
}
TINY_MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
# built with the zoo's folder: checked on the prompts that the zoo's cue models make for the demo's clips
_BUILT_FROM_ZOO = ("fusion-lm", "qa-lm")
_COMPLETE_MARKER = ".tiny-zoo-complete"


def _builder(name: str) -> Callable[[Path], None]:
    if name not in _BUILDERS:
        raise ValueError(f"unknown tiny model {name!r}; available: {', '.join(TINY_MODEL_NAMES)}")
    module_name, function_name = _BUILDERS[name].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, function_name)


def builders_digest() -> str:
    """A digest of the zoo's own source: a model that other builders made (an older zoo) is built again."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_tiny_model(name: str, root: str | Path, overwrite: bool = False) -> Path:
    """Build one tiny model into ``root/name`` (atomically) and return its path.

    A model already built there by these builders is reused unless ``overwrite`` is set.
    """
    target = Path(root) / name
    marker = target / _COMPLETE_MARKER
    if not overwrite and marker.exists() and marker.read_text() == builders_digest():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        logger.info("building tiny %s into %s", name, target)
        builder = _builder(name)
        builder(staging, target.parent) if name in _BUILT_FROM_ZOO else builder(staging)
        (staging / _COMPLETE_MARKER).write_text(builders_digest())
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_zoo(
    root: str | Path, names: Iterable[str] | None = None, overwrite: bool = False
) -> dict[str, Path]:
    """Build the tiny models ``names`` (all by default) under ``root``; returns name -> path."""
    return {name: build_tiny_model(name, root, overwrite) for name in (names or TINY_MODEL_NAMES)}
