"""The paper pipeline's expert models (``paper-inprocess``) as local model folders, built without any download.

``size="real"`` builds each architecture from its bundled config (``configs/*.json``, the Hub checkpoints'
shapes) with random weights, initialised on the target device in the dtype the toolkit runs it in;
``size="tiny"`` takes the tiny zoo's own config. Either way the processor (tokenizer, feature extractor)
comes from the tiny zoo (:mod:`fusion_datasets.testing.zoo`), which builds them offline; real-size models
get the real feature extractors' geometry where the tiny one differs (Whisper-large-v3's 128 mel bins,
Qwen2.5-VL's default frame sizes). The config's token ids are taken from the tiny tokenizer, so prompts
tokenise as they would with the real vocabulary's special tokens (only the ordinary text takes more
tokens: the tiny BPE has 400 of them). The folder then loads by path exactly as the Hub checkpoint does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ModelSpec:
    """One expert model: what it is on the Hub, its bundled config and the zoo entry that gives its processor."""

    hub_id: str  # the checkpoint the config names
    zoo: str  # the tiny zoo entry whose processor (and, at tiny size, config) the folder takes
    config_file: str  # the real-size config under configs/
    auto_class: str  # the transformers Auto class that builds it ("" for Demucs)
    token_keys: tuple[str, ...] = ()  # config keys (dotted for nested configs) copied from the tiny config


SPECS: dict[str, ModelSpec] = {
    "htdemucs": ModelSpec("htdemucs", "htdemucs", "htdemucs.json", ""),
    "whisper": ModelSpec(
        "openai/whisper-large-v3", "whisper", "whisper-large-v3.json", "AutoModelForSpeechSeq2Seq",
        ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "suppress_tokens",
         "begin_suppress_tokens"),
    ),
    "ast": ModelSpec(
        "MIT/ast-finetuned-audioset-10-10-0.4593", "ast-audioset", "ast-audioset.json",
        "AutoModelForAudioClassification", ("id2label", "label2id", "problem_type"),
    ),
    "qwen2-audio": ModelSpec(
        "Qwen/Qwen2-Audio-7B-Instruct", "qwen2-audio", "qwen2-audio-7b-instruct.json", "AutoModelForMultimodalLM",
        ("audio_token_index", "text_config.bos_token_id", "text_config.eos_token_id", "text_config.pad_token_id"),
    ),
    "qwen2.5-vl": ModelSpec(
        "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2.5-vl", "qwen2.5-vl-7b-instruct.json", "AutoModelForImageTextToText",
        ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id",
         "text_config.bos_token_id", "text_config.eos_token_id", "text_config.pad_token_id"),
    ),
    "clap": ModelSpec(
        "laion/clap-htsat-unfused", "clap", "clap-htsat-unfused.json", "AutoModel",
        ("text_config.bos_token_id", "text_config.eos_token_id", "text_config.pad_token_id"),
    ),
}


def _copy_keys(target: dict[str, Any], source: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        *parents, leaf = key.split(".")
        into, origin = target, source
        for parent in parents:
            into, origin = into.setdefault(parent, {}), origin.get(parent, {})
        if leaf in origin:
            into[leaf] = origin[leaf]


def real_config(spec: ModelSpec, tiny_folder: Path) -> Any:
    """The bundled real-size config, with the tiny tokenizer's token ids (and AST's label names)."""
    from transformers import AutoConfig

    data = json.loads((CONFIGS / spec.config_file).read_text())
    _copy_keys(data, AutoConfig.from_pretrained(tiny_folder).to_dict(), spec.token_keys)
    return AutoConfig.for_model(data.pop("model_type"), **data)


def real_processor(name: str, processor: Any) -> Any:
    """The tiny zoo's processor with the real checkpoint's feature geometry where the tiny one differs."""
    if name == "whisper":  # large-v3 reads 128 mel bins, the tiny Whisper 80
        from transformers import WhisperFeatureExtractor

        processor.feature_extractor = WhisperFeatureExtractor(feature_size=128)
    elif name == "qwen2.5-vl":  # the tiny processor shrinks frames to 56x56 pixels
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        processor.image_processor = Qwen2VLImageProcessor()
        processor.video_processor = Qwen2VLVideoProcessor(cap_pixels_per_frame=True)
    return processor


def build_transformers_folder(name: str, size: str, tiny_folder: Path, folder: Path, device: str, dtype: Any,
                              new_tokens: int | None) -> Any:
    """Build model ``name`` with random weights on ``device``, save it with its processor into ``folder``; returns
    the model, still on ``device``.

    ``new_tokens`` fixes the generation length of every ``generate`` that reads the folder's generation config
    (``min_new_tokens``; the toolkit's experts set ``max_new_tokens`` themselves).
    """
    import torch
    import transformers
    from transformers import AutoConfig, AutoProcessor, GenerationConfig

    spec = SPECS[name]
    config = real_config(spec, tiny_folder) if size == "real" else AutoConfig.from_pretrained(tiny_folder)
    with torch.device(device):  # the weights are initialised where they run, never on the CPU first
        model = getattr(transformers, spec.auto_class).from_config(config, dtype=dtype).eval()
    processor = AutoProcessor.from_pretrained(tiny_folder)
    if size == "real":
        processor = real_processor(name, processor)
    if (tiny_folder / "generation_config.json").exists():
        generation = GenerationConfig.from_pretrained(tiny_folder)
        if name == "whisper":
            generation.max_length = config.max_target_positions  # the tiny Whisper's decoder is shorter
            # Whisper's generate reads any id from <|notimestamps|> + 1 up as a timestamp and, on meeting one,
            # decodes the window again from there: random weights would double the decoding a real model does
            first_timestamp = generation.no_timestamps_token_id + 1
            generation.suppress_tokens = list(range(first_timestamp, config.vocab_size))
        generation.min_new_tokens = new_tokens
        model.generation_config = generation
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model


def build_demucs_folder(size: str, tiny_folder: Path, folder: Path, device: str) -> Any:
    """A Demucs model repository in ``folder`` laid out as the tiny zoo's (its bag file, its signature), holding
    the real-size HTDemucs (or the tiny one); returns the model on ``device``."""
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state, save_with_checksum

    (model_file,) = tiny_folder.glob("*.th")
    package = torch.load(model_file, map_location="cpu", weights_only=False)  # demucs' own pickled package
    kwargs = json.loads((CONFIGS / SPECS["htdemucs"].config_file).read_text()) if size == "real" else package["kwargs"]
    with torch.device(device):
        model = HTDemucs(**kwargs).eval()
    package.update(kwargs=model._init_args_kwargs[1], state=get_state(model, None))
    folder.mkdir(parents=True, exist_ok=True)
    for bag in tiny_folder.glob("*.yaml"):
        shutil.copy(bag, folder / bag.name)
    signature = model_file.stem.rsplit("-", 1)[0]
    save_with_checksum(package, folder / f"{signature}.th")
    return model


def parameter_count(model: Any) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
