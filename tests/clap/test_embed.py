import numpy as np
import pytest

from fusion_datasets.clap.base import normalize_rows
from fusion_datasets.clap.embed import TransformersClap, clap_kind, clap_scores, load_clap
from fusion_datasets.media import decode_audio, resample


def _clips(paths: dict[str, str], names: list[str], rate: int = 48000) -> list[np.ndarray]:
    return [resample(decode_audio(paths[name]), rate)[0] for name in names]


@pytest.fixture(scope="module")
def tiny_clap(tiny_zoo) -> TransformersClap:
    return load_clap(str(tiny_zoo["clap"]), device="cpu", batch_size=2)


def _assert_unit_rows(embeddings: np.ndarray, rows: int, dim: int) -> None:
    assert embeddings.shape == (rows, dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_transformers_embeddings_are_unit_rows(tiny_clap, clap_clips):
    assert isinstance(tiny_clap, TransformersClap) and tiny_clap.sampling_rate == 48000
    _assert_unit_rows(
        tiny_clap.embed_audio(_clips(clap_clips, ["music", "noise", "speech"])), 3, tiny_clap.dim
    )
    _assert_unit_rows(tiny_clap.embed_text(["a dog barks", "music plays", "rain"]), 3, tiny_clap.dim)
    assert tiny_clap.embed_text([]).shape == (0, tiny_clap.dim)


def test_long_clips_embed_the_same_alone_in_a_batch_and_twice(tiny_clap, clap_clips):
    clips = _clips(clap_clips, ["music", "long", "noise"])
    together = tiny_clap.embed_audio(clips)
    alone = tiny_clap.embed_audio(clips[1:2])
    np.testing.assert_allclose(together[1], alone[0], atol=1e-5)
    np.testing.assert_array_equal(alone, tiny_clap.embed_audio(clips[1:2]))


def test_embedding_leaves_the_global_numpy_random_state_alone(tiny_clap, clap_clips):
    np.random.seed(7)
    expected = np.random.rand(3)
    np.random.seed(7)
    tiny_clap.embed_audio(_clips(clap_clips, ["long"]))
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_scores_are_cosines_of_each_pair(tiny_clap, clap_clips):
    clips = _clips(clap_clips, ["music", "noise"])
    texts = ["music with drums", "wind noise"]
    scores = clap_scores(tiny_clap, clips, texts)
    expected = np.sum(tiny_clap.embed_audio(clips) * tiny_clap.embed_text(texts), axis=1)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert np.all(np.abs(scores) <= 1.0 + 1e-6)
    with pytest.raises(ValueError, match="2 clips for 1 texts"):
        clap_scores(tiny_clap, clips, texts[:1])


def test_only_mono_clips_are_accepted(tiny_clap):
    with pytest.raises(ValueError, match="mono 1-D"):
        tiny_clap.embed_audio([np.zeros((2, 48000), dtype=np.float32)])


def test_kind_follows_the_model_name():
    assert clap_kind("models/630k-audioset-best.pt") == "laion"
    assert clap_kind("laion/clap-htsat-unfused") == "transformers"
    assert clap_kind("anything.pt", "transformers") == "transformers"
    with pytest.raises(ValueError, match="kind must be one of auto, transformers, laion"):
        clap_kind("x", "onnx")


def test_normalize_rows_keeps_zero_rows():
    rows = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]])


def test_laion_checkpoint_architecture_is_read_off_its_weights():
    torch = pytest.importorskip("torch")
    from fusion_datasets.clap.laion import laion_architecture

    patch = "audio_branch.patch_embed.proj.weight"
    assert laion_architecture({patch: torch.zeros(96, 1, 4, 4)}) == ("HTSAT-tiny", False)
    fused = {patch: torch.zeros(128, 1, 4, 4), "audio_branch.patch_embed.mel_conv2d.weight": torch.zeros(1)}
    assert laion_architecture(fused) == ("HTSAT-base", True)
    with pytest.raises(ValueError, match="not an HTSAT LAION-CLAP checkpoint"):
        laion_architecture({patch: torch.zeros(64, 1, 4, 4)})


def test_laion_adapter_runs_in_float32_only(tmp_path):
    pytest.importorskip("laion_clap")
    from fusion_datasets.clap.laion import LaionClap

    with pytest.raises(ValueError, match="float32 only"):
        LaionClap(tmp_path / "never-read.pt", device="cpu", dtype="bfloat16")


def test_laion_adapter_on_a_tiny_original_checkpoint(tiny_laion_clap, clap_clips):
    from fusion_datasets.clap.laion import LaionClap

    checkpoint, text_encoder = tiny_laion_clap
    clap = load_clap(checkpoint, device="cpu", text_encoder=text_encoder, batch_size=2)
    assert isinstance(clap, LaionClap) and not clap.fused and clap.sampling_rate == 48000
    clips = _clips(clap_clips, ["speech", "long"])
    audio = clap.embed_audio(clips)
    _assert_unit_rows(audio, 2, clap.dim)
    np.testing.assert_allclose(clap.embed_audio(clips[1:])[0], audio[1], atol=1e-5)
    text = clap.embed_text(["a dog barks", "music"])
    _assert_unit_rows(text, 2, clap.dim)
    assert np.all(np.abs(audio @ text.T) <= 1.0 + 1e-6)
