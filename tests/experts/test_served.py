"""Served generative experts: the sound, music and visual experts with ``backend: {kind: server}``.

Against a real ``transformers serve`` on 127.0.0.1 with the test kit's tiny Qwen2-Audio and Qwen2.5-VL
(it serves both: audio as ``input_audio`` or ``audio_url``, frames as ``image_url``), behind a
:class:`~fusion_datasets.testing.server.FaultProxy` that keeps what arrived and injects the faults.
"""

from __future__ import annotations

import base64
import io
import json
import threading

import numpy as np
import pytest
import soundfile

from fusion_datasets.chat.backends import ServerBackendConfig
from fusion_datasets.experts import AudioLLMMusicCaptioner, AudioLLMSoundDescriber, VideoDescriber
from fusion_datasets.experts.served import served_audio
from fusion_datasets.media import MediaBatch
from fusion_datasets.testing import media
from fusion_datasets.testing.server import FaultProxy, Faults, serve_model
from fusion_datasets.testing.stub_chat import StubChatServer

RATE = 16000


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, str]:
    """A 16-bit 16 kHz mono clip (what the server decodes is then exactly what was decoded here), a 44.1 kHz
    stereo one (resampled before sending), a 3 s one cut to max_seconds, and a corrupt file."""
    folder = tmp_path_factory.mktemp("served-clips")
    paths = {
        "speech": media.write_audio(folder / "speech.wav", media.speech(1.5, RATE), RATE),
        "music": media.write_audio(folder / "music.wav", media.music(1.5, 44100, channels=2), 44100),
        "long": media.write_audio(folder / "long.wav", media.noise(3.0, 22050), 22050),
    }
    (folder / "corrupt.wav").write_bytes(b"not audio" * 100)
    paths["corrupt"] = folder / "corrupt.wav"
    return {name: str(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def audio_server(tiny_zoo):
    with serve_model(tiny_zoo["qwen2-audio"]) as server:
        yield server


def _batch(clips: dict[str, str], names: list[str]) -> dict[str, list]:
    return {"id": names, "audio": [clips[name] for name in names]}


def _served(url: str, **options) -> ServerBackendConfig:
    return ServerBackendConfig(**{"model": "tiny", "base_urls": (url,), "token_env": None, "max_retries": 0,
                                  **options})


def _sent_audio(request_body: dict) -> tuple[np.ndarray, int]:
    """The audio of a chat request's content parts, decoded as a server decodes it."""
    part = next(part for part in request_body["messages"][0]["content"] if part["type"] != "text")
    data = part["input_audio"]["data"] if part["type"] == "input_audio" else part["audio_url"]["url"].split(",")[1]
    samples, rate = soundfile.read(io.BytesIO(base64.b64decode(data)), dtype="float32")
    return samples, rate


def test_served_sound_captions_match_in_process_and_carry_the_clip(tiny_zoo, clips, audio_server):
    model = str(tiny_zoo["qwen2-audio"])
    names = ["speech", "music", "long", "corrupt"]
    with FaultProxy(audio_server.base_url) as proxy:
        served = AudioLLMSoundDescriber(model=model, max_new_tokens=6, max_seconds=2.0,
                                        backend=_served(proxy.base_url, model=model))
        answers = served(_batch(clips, names))
        arrived = [request.json() for request in proxy.requests]
    local = AudioLLMSoundDescriber(model=model, max_new_tokens=6, max_seconds=2.0, device="cpu")(_batch(clips, names))
    # the same tiny model and prompt, greedy: the same answer served and in process
    assert answers["sound_caption"][0] == local["sound_caption"][0] and answers["sound_caption"][0]
    assert all(isinstance(caption, str) for caption in answers["sound_caption"][:3])
    assert answers["sound_caption"][3] is None and answers["errors"][3][0]["stage"] == "decode"
    assert len(arrived) == 3  # the corrupt clip is never sent
    # what arrived is each clip at the model's rate, cut to max_seconds, to 16-bit precision
    decoded = MediaBatch(_batch(clips, names)).audio(RATE)
    sent = [_sent_audio(body) for body in arrived]  # in the order they arrived, which concurrency decides
    assert {rate for _, rate in sent} == {RATE}
    for row in range(3):
        clip = np.clip(decoded[row][0, : 2 * RATE], -1, 1)
        assert any(len(samples) == len(clip) and np.abs(samples - clip).max() <= 1 / 32768 + 1e-6
                   for samples, _ in sent), names[row]
    body = arrived[0]
    assert body["model"] == model and body["messages"][0]["content"][-1]["text"] == served.config.prompt


def test_audio_url_and_flac_reach_the_same_server(tiny_zoo, clips, audio_server):
    model = str(tiny_zoo["qwen2-audio"])
    with FaultProxy(audio_server.base_url) as proxy:
        expert = AudioLLMSoundDescriber(model=model, max_new_tokens=4, audio_part="audio_url", audio_format="flac",
                                        backend=_served(proxy.base_url, model=model))
        answers = expert(_batch(clips, ["speech"]))
        (request,) = proxy.requests
    assert answers["sound_caption"][0] and not answers["errors"][0]
    url = request.json()["messages"][0]["content"][0]["audio_url"]["url"]
    assert url.startswith("data:audio/flac;base64,")
    assert _sent_audio(request.json())[1] == RATE


def test_faults_end_as_recorded_errors_and_the_rest_of_the_batch_goes_on(tiny_zoo, clips, audio_server):
    model = str(tiny_zoo["qwen2-audio"])
    names = ["speech", "music", "long"]
    cases = {
        "500s": (Faults(fail_first=1, fail_status=500), {}, "HTTP 500"),
        "413": (Faults(fail_first=1, fail_status=413), {}, "HTTP 413"),
        "stall": (Faults(stall=frozenset({0}), stall_seconds=30), {"timeout": 3.0}, "TimeoutError"),
    }
    for name, (faults, options, message) in cases.items():
        with FaultProxy(audio_server.base_url, faults) as proxy:
            expert = AudioLLMSoundDescriber(model=model, max_new_tokens=4,
                                            backend=_served(proxy.base_url, model=model, max_concurrency=1, **options))
            answers = expert(_batch(clips, names))
        failed = [row for row, errors in enumerate(answers["errors"]) if errors]
        assert len(failed) == 1, name  # one request hit the fault; the other rows have their answer
        assert message in answers["errors"][failed[0]][0]["message"] and "tiny (served)" not in message
        assert sum(caption is not None for caption in answers["sound_caption"]) == 2, name
    # too large to send: the row's error, and nothing goes to the server
    with StubChatServer(answer=lambda request: "a hum") as stub:
        expert = AudioLLMSoundDescriber(model=model, max_request_bytes=2048, backend=_served(stub.base_url))
        answers = expert(_batch(clips, ["speech"]))
    assert stub.requests == 0 and "over max_request_bytes" in answers["errors"][0][0]["message"]


def test_a_server_killed_mid_batch_leaves_each_row_an_answer_or_an_error(tiny_zoo, clips):
    model = str(tiny_zoo["qwen2-audio"])
    names = ["speech", "music", "long"] * 4
    with serve_model(tiny_zoo["qwen2-audio"]) as server, \
            FaultProxy(server.base_url, Faults(stall=frozenset({5}), stall_seconds=3)) as proxy:
        expert = AudioLLMSoundDescriber(model=model, max_new_tokens=4,
                                        backend=_served(proxy.base_url, model=model, max_concurrency=2))
        killer = threading.Timer(2.0, server.kill)  # while request 5 stalls and others are in flight
        killer.start()
        answers = expert(_batch(clips, names))
        killer.join()
    outcomes = [(caption is not None) != bool(errors) for caption, errors in zip(answers["sound_caption"],
                                                                                   answers["errors"])]
    assert all(outcomes) and any(answers["errors"])


def test_served_requests_stay_max_concurrency_in_flight(clips):
    with StubChatServer(answer=lambda request: "a hum", latency=0.2) as stub:
        expert = AudioLLMSoundDescriber(backend=_served(stub.base_url, max_concurrency=4))
        answers = expert(_batch(clips, ["speech", "music", "long"] * 4))
    assert stub.requests == 12 and stub.peak_in_flight == 4 and answers["sound_caption"] == ["a hum"] * 12
    assert expert.batch_size == 16 and expert.served_concurrency == 4


def test_a_rows_error_names_the_server_and_the_timeout_or_the_body(clips):
    with StubChatServer(answer=lambda request: "a hum", latency=3.0) as stub:
        answers = AudioLLMSoundDescriber(backend=_served(stub.base_url, timeout=0.5))(_batch(clips, ["speech"]))
    (error,) = answers["errors"][0]
    assert error == {"stage": "sound", "message": f"tiny (served): TimeoutError: no answer from {stub.base_url} "
                                                  "within timeout=0.5 s"}
    faults = Faults(malformed=frozenset({0}), malformed_body=b"<html>502 Bad Gateway</html>")
    with StubChatServer(answer=lambda request: "a hum") as stub, FaultProxy(stub.base_url, faults) as proxy:
        answers = AudioLLMSoundDescriber(backend=_served(proxy.base_url))(_batch(clips, ["speech"]))
    (error,) = answers["errors"][0]
    assert error["message"] == (f"tiny (served): HTTP 200 from {proxy.base_url}/v1/chat/completions, a body that "
                                "is not JSON: '<html>502 Bad Gateway</html>'")


def test_the_served_music_expert_is_gated_and_named_on_the_card(clips):
    with StubChatServer(answer=lambda request: "a waltz") as stub:
        backend = _served(stub.base_url, model="Qwen/Qwen2-Audio-7B-Instruct")
        expert = AudioLLMMusicCaptioner(backend=backend)
        answers = expert({**_batch(clips, ["speech", "music"]), "music_score": [0.1, 0.9]})
    assert answers["music_caption"] == [None, "a waltz"] and stub.requests == 1
    entry = expert.card_entry()
    assert entry["model"] == "Qwen/Qwen2-Audio-7B-Instruct" and entry["served"] is True
    # served and in process are different computations; resources are not
    in_process = AudioLLMMusicCaptioner()
    assert expert.fingerprint() != in_process.fingerprint()
    elsewhere = _served("http://other:1", model="Qwen/Qwen2-Audio-7B-Instruct", max_concurrency=3, timeout=9.0)
    assert expert.fingerprint() == AudioLLMMusicCaptioner(backend=elsewhere).fingerprint()


def test_family_defaults_and_bad_options():
    assert served_audio("Qwen/Qwen2-Audio-7B-Instruct").audio_part == "input_audio"
    assert served_audio("nvidia/audio-flamingo-3-hf").audio_part == "audio_url"
    with pytest.raises(ValueError, match="audio_part must be one of input_audio, audio_url"):
        AudioLLMSoundDescriber(audio_part="audio")
    with pytest.raises(ValueError, match="kind 'transformers'"):
        from fusion_datasets.chat.backends import TransformersBackendConfig

        AudioLLMSoundDescriber(backend=TransformersBackendConfig(model="m"))


def test_served_video_sends_the_sampled_frames_bounded(tiny_zoo, tmp_path):
    model = str(tiny_zoo["qwen2.5-vl"])
    video = media.write_video(tmp_path / "clip.mp4", 2.0, fps=10, size=(320, 240))
    with serve_model(tiny_zoo["qwen2.5-vl"]) as server, FaultProxy(server.base_url) as proxy:
        expert = VideoDescriber(model=model, num_frames=3, frame_size=96, max_new_tokens=4,
                                backend=_served(proxy.base_url, model=model))
        answers = expert({"id": ["a", "b"], "audio": [None, None], "video": [str(video), None]})
        (request,) = proxy.requests
    assert isinstance(answers["video_caption"][0], str) and answers["video_caption"][1] is None
    parts = request.json()["messages"][0]["content"]
    images = [part for part in parts if part["type"] == "image_url"]
    assert len(images) == 3 and parts[-1]["type"] == "text" and "00:00" in parts[-1]["text"]
    from PIL import Image

    sizes = {Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",")[1]))).size for part in images}
    assert sizes == {(96, 72)}  # 320x240 scaled to at most 96 a side, never cut
    assert json.dumps(request.json()).count("data:image/jpeg;base64,") == 3


def test_a_run_records_a_refused_request_and_retry_errors_redoes_only_that_row(tiny_zoo, tmp_path):
    """``run tiny`` with a served sound expert: the server refuses one request (400, not retried)."""
    from fusion_datasets.cli import main
    from fusion_datasets.demo import write_sample_clips

    tiny_zoo.build_all()
    write_sample_clips(tmp_path / "clips")
    with StubChatServer(answer=lambda request: "a hum") as stub, \
            FaultProxy(stub.base_url, Faults(fail_first=1, fail_status=400)) as proxy:
        def run(*extra: str) -> int:
            return main(["run", "tiny", "--input", str(tmp_path / "clips"), "--output", str(tmp_path / "out"),
                         "--set", f"experts.sound.backend={{kind: server, base_urls: [{proxy.base_url}]}}",
                         "--set", "experts.separation.enabled=false", *extra])

        assert run() == 0  # one clip's error is recorded; the run goes on
        assert stub.requests == 3 and len(proxy.requests) == 4
        assert run("--retry-errors") == 0
        assert stub.requests == 4 and len(proxy.requests) == 5  # that row only
    import datasets

    cues = datasets.load_dataset(str(tmp_path / "out"), "cues", split="train")
    assert cues["sound_caption"] == ["a hum"] * 4 and not any(cues["errors"])
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["clips_with_errors"] == 0


def test_the_paper_config_serves_its_generative_experts(tmp_path, capsys):
    from fusion_datasets.cli import main

    media.write_audio(tmp_path / "clips" / "a.wav", media.noise(1.0, RATE), RATE)
    assert main(["run", "paper", "--input", str(tmp_path / "clips"), "--output", str(tmp_path / "out"),
                 "--dry-run"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert "Qwen/Qwen2.5-VL-72B-Instruct (served x" in lines["visual"]
    assert "(served x" in lines["sound"] and "(served x" in lines["music"] and "(served" not in lines["speech"]
