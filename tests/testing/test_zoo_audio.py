"""The audio models of the tiny zoo load by path like Hub checkpoints and run on synthetic media."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from fusion_datasets.testing import media
from fusion_datasets.testing.zoo import build_tiny_model

AUDIO_MODELS = ["whisper", "ast-audioset", "wav2vec2-audioset", "clap", "htdemucs"]


def test_whisper_generate_follows_language_and_task(tiny_zoo):
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    path = tiny_zoo["whisper"]
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForSpeechSeq2Seq.from_pretrained(path)
    clips = [media.speech(3.0, 16000)[0], media.music(2.0, 16000)[0]]
    features = processor(clips, sampling_rate=16000, return_tensors="pt").input_features
    assert features.shape == (2, 80, 3000)

    output = model.generate(
        features, language="fr", task="transcribe", max_new_tokens=5, return_dict_in_generate=True
    )
    prompt = processor.tokenizer.convert_tokens_to_ids(
        ["<|startoftranscript|>", "<|fr|>", "<|transcribe|>", "<|notimestamps|>"]
    )
    assert output.sequences.shape[0] == 2
    assert output.sequences[:, :4].tolist() == [prompt, prompt]
    # The tokenizer computes the same prompt from its own layout (a language id is sot + 1 + its rank).
    processor.tokenizer.set_prefix_tokens(language="fr", task="transcribe")
    assert processor.tokenizer.prefix_tokens == prompt
    texts = processor.batch_decode(output.sequences, skip_special_tokens=True)
    assert all(isinstance(text, str) and text and "<|" not in text for text in texts)

    language_ids = model.detect_language(features)
    assert set(language_ids.tolist()) <= set(model.generation_config.lang_to_id.values())


def test_whisper_pipeline_chunks_long_audio_and_returns_language(tiny_zoo):
    from transformers import pipeline
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    asr = pipeline("automatic-speech-recognition", model=str(tiny_zoo["whisper"]))
    clip = media.speech(35.0, 16000)[0]
    # The pipeline pops "raw" from the dict it is given: one dict per call.
    batched = asr(
        {"raw": clip, "sampling_rate": 16000},
        chunk_length_s=30,
        batch_size=2,
        generate_kwargs={"max_new_tokens": 4},
    )
    assert isinstance(batched["text"], str) and batched["text"]

    # transformers 5.24 keeps one language per batch and then fails to unbatch it: ask one window at a time.
    result = asr(
        {"raw": clip, "sampling_rate": 16000},
        chunk_length_s=30,
        return_language=True,
        generate_kwargs={"max_new_tokens": 4},
    )
    assert isinstance(result["text"], str) and result["text"]
    assert result["chunks"] and all(chunk["language"] in LANGUAGES.values() for chunk in result["chunks"])


def test_ast_scores_the_527_audioset_classes_independently(tiny_zoo):
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, pipeline

    path = tiny_zoo["ast-audioset"]
    feature_extractor = AutoFeatureExtractor.from_pretrained(path)
    model = AutoModelForAudioClassification.from_pretrained(path)
    assert model.config.id2label[0] == "Speech" and model.config.id2label[137] == "Music"
    assert model.config.problem_type == "multi_label_classification"

    clips = [media.music(3.0, 16000)[0], media.speech(12.0, 16000)[0]]
    inputs = feature_extractor(clips, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (2, 527)

    classifier = pipeline("audio-classification", model=str(path))
    top = classifier({"raw": clips[0], "sampling_rate": 16000}, top_k=5)
    assert len(top) == 5 and all(0.0 < item["score"] < 1.0 for item in top)
    assert {item["label"] for item in top} <= set(model.config.label2id)
    # Sigmoid scores, one per class: they do not sum to 1 as a softmax would.
    assert sum(item["score"] for item in classifier(clips[0], top_k=527)) > 2.0


def test_clap_audio_and_text_embeddings_share_the_projection(tiny_zoo):
    from transformers import ClapModel, ClapProcessor

    path = tiny_zoo["clap"]
    processor = ClapProcessor.from_pretrained(path)
    model = ClapModel.from_pretrained(path)
    assert processor.feature_extractor.truncation == "rand_trunc"

    # One clip longer than CLAP's 10 s window, which rand_trunc crops, and one it repeat-pads.
    clips = [media.music(12.0, 48000)[0], media.noise(1.0, 48000)[0], media.speech(4.0, 48000)[0]]
    audio = processor(audio=clips, sampling_rate=48000, return_tensors="pt")
    assert audio.input_features.shape == (3, 1, 1001, 64)
    text = processor(text=["a dog barks", "music plays in the background"], padding=True, return_tensors="pt")
    with torch.no_grad():
        audio_embeds = model.get_audio_features(**audio).pooler_output
        text_embeds = model.get_text_features(**text).pooler_output

    dim = model.config.projection_dim
    assert audio_embeds.shape == (3, dim) and text_embeds.shape == (2, dim)
    torch.testing.assert_close(audio_embeds.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(text_embeds.norm(dim=-1), torch.ones(2))


def test_htdemucs_loads_from_the_local_repo_and_separates_four_stems(tiny_zoo):
    from demucs.apply import apply_model
    from demucs.pretrained import get_model

    model = get_model("htdemucs", repo=tiny_zoo["htdemucs"])
    assert model.sources == ["drums", "bass", "other", "vocals"] and model.samplerate == 44100

    stereo = [media.music(5.0, 44100, channels=2), media.noise(5.0, 44100, channels=2)]
    mix = torch.from_numpy(media.mix(*stereo))
    with torch.no_grad():
        stems = apply_model(model, mix[None], shifts=0, split=True, overlap=0.25)
    assert stems.shape == (1, 4, 2, mix.shape[-1])
    assert torch.isfinite(stems).all()


def _digests(folder: Path) -> dict[str, str]:
    return {file.name: hashlib.sha256(file.read_bytes()).hexdigest() for file in sorted(folder.iterdir())}


@pytest.mark.parametrize("name", AUDIO_MODELS)
def test_builders_are_deterministic(name, tmp_path):
    first = build_tiny_model(name, tmp_path / "first")
    second = build_tiny_model(name, tmp_path / "second")
    assert _digests(first) == _digests(second)


def test_build_tiny_model_reuses_a_built_folder(tmp_path):
    path = build_tiny_model("htdemucs", tmp_path)
    (weights,) = path.glob("*.th")
    built_at = weights.stat().st_mtime_ns
    (path / "kept").touch()

    assert build_tiny_model("htdemucs", tmp_path) == path
    assert weights.stat().st_mtime_ns == built_at and (path / "kept").exists()

    build_tiny_model("htdemucs", tmp_path, overwrite=True)
    assert not (path / "kept").exists() and len(list(path.glob("*.th"))) == 1
    assert [child.name for child in tmp_path.iterdir()] == ["htdemucs"]  # no staging folder left


def test_a_model_built_by_other_builders_is_built_again(tmp_path):
    path = build_tiny_model("htdemucs", tmp_path)
    (path / ".tiny-zoo-complete").write_text("0123456789abcdef")  # an older zoo's builders
    (path / "kept").touch()
    assert build_tiny_model("htdemucs", tmp_path) == path
    assert not (path / "kept").exists()
