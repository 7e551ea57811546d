"""Served generative experts: what building a request costs, and what ``max_concurrency`` buys.

1. Request building, per clip: decoding a 10 s 44.1 kHz stereo clip and resampling it to 16 kHz (what
   in-process generation needs too) against that plus encoding it as a WAV or FLAC content part; reading
   8 frames of a 10 s video against that plus encoding them as JPEG image parts.
2. The sound expert served at ``max_concurrency`` 16 against 1 on the same clips: on a stub server
   answering after ``--latency`` seconds (the client's share), and on ``transformers serve`` with the
   test kit's tiny Qwen2-Audio (2 CPU cores: the server's compute decides there).

    python benchmarks/served_experts.py --clips 32
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion_datasets import synthetic
from fusion_datasets.chat.backends import ServerBackendConfig
from fusion_datasets.experts import AudioLLMSoundDescriber
from fusion_datasets.experts.served import audio_part, image_part
from fusion_datasets.experts.visual import read_clip
from fusion_datasets.media import MediaBatch
from fusion_datasets.pipeline.config import tiny_zoo_dir
from fusion_datasets.testing.server import serve_model
from fusion_datasets.testing.stub_chat import StubChatServer
from fusion_datasets.testing.zoo import build_tiny_model


def per_clip_ms(work: Callable[[], Any], count: int) -> float:
    start = time.perf_counter()
    work()
    return 1000 * (time.perf_counter() - start) / count


def request_building(folder: Path, clips: list[str]) -> None:
    batch = {"id": list(range(len(clips))), "audio": clips}
    MediaBatch(batch).audio(16000)  # the files in the page cache, as for every later measure
    decode = per_clip_ms(lambda: MediaBatch(batch).audio(16000), len(clips))
    print(f"audio, {len(clips)} clips of 10 s, 44.1 kHz stereo -> 16 kHz mono")
    print(f"  decode and resample          {decode:7.1f} ms/clip")
    for audio_format in ("wav", "flac"):
        def build(audio_format: str = audio_format) -> None:
            for samples in MediaBatch(batch).audio(16000):
                audio_part(samples[0], 16000, "input_audio", audio_format)

        print(f"  and encode a {audio_format:4} part      {per_clip_ms(build, len(clips)):7.1f} ms/clip")
    video = synthetic.write_video(folder / "video.mp4", 10.0, fps=25, size=(640, 360))
    frames = per_clip_ms(lambda: [read_clip(str(video), num_frames=8) for _ in range(8)], 8)
    encoded = per_clip_ms(lambda: [[image_part(frame, 448) for frame in read_clip(str(video), num_frames=8).frames]
                                   for _ in range(8)], 8)
    print("video, 10 s 640x360, 8 frames")
    print(f"  read frames                  {frames:7.1f} ms/clip")
    print(f"  and encode JPEG parts (448)  {encoded:7.1f} ms/clip")


def concurrency(url: str, clips: list[str], model: str, label: str) -> None:
    batch = {"id": list(range(len(clips))), "audio": clips}
    seconds = {}
    for limit in (1, 16):
        backend = ServerBackendConfig(model=model, base_urls=(url,), max_concurrency=limit, token_env=None)
        expert = AudioLLMSoundDescriber(model=model, max_new_tokens=8, backend=backend)
        start = time.perf_counter()
        answers = expert(batch)
        seconds[limit] = time.perf_counter() - start
        if any(answers["errors"]):
            raise RuntimeError(f"{label}: requests failed: {answers['errors']}")
    print(f"{label}: {len(clips)} sound captions, max_concurrency 1: {seconds[1]:.2f} s, "
          f"16: {seconds[16]:.2f} s -> {seconds[1] / seconds[16]:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the stub server waits per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        audio = synthetic.mix(synthetic.music(10.0, 44100, channels=2), synthetic.noise(10.0, 44100, channels=2))
        clips = [str(synthetic.write_audio(folder / f"{index}.wav", audio, 44100)) for index in range(args.clips)]
        request_building(folder, clips)
        with StubChatServer(lambda request: "A hum.", args.latency) as stub:
            concurrency(stub.base_url, clips, "stub", f"stub server, {args.latency * 1000:.0f} ms per request")
        model = str(build_tiny_model("qwen2-audio", tiny_zoo_dir()))
        with serve_model(model) as server:
            concurrency(server.base_url, clips[:16], model, "transformers serve, tiny Qwen2-Audio, 2 CPU cores")


if __name__ == "__main__":
    main()
