"""Timestamped descriptions of what is visible in each clip's video: the paper's visual expert.

The paper describes each clip's video with Qwen2.5-VL-72B as a timestamped (MM:SS) record of visible
content only; the default here is ``Qwen/Qwen2.5-VL-7B-Instruct``. Frames are read with decord from
inside the clip's ``[start, end]`` window; their times from the clip start go into the prompt (so the
model can write ``MM:SS`` lines) and into the processor's video metadata (so the model's temporal
positions match the real frame rate). The audio is never decoded here.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fusion_datasets import runtime
from fusion_datasets.experts.served import ServedExpert, ServedOptions, ask_server, image_part
from fusion_datasets.media import MediaBatch, MediaError
from fusion_datasets.prompts import read_prompt
from fusion_datasets.registry import register
from fusion_datasets.steps import ModelConfig, ModelStep

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl", "qwen2_vl")
DEFAULT_PROMPT = read_prompt("visual_v1")


def _check_sampling(num_frames: int | None, fps: float | None) -> None:
    if (num_frames is None) == (fps is None):
        raise ValueError(
            f"set exactly one of num_frames and fps (num_frames=None to sample at fps), "
            f"got num_frames={num_frames!r} and fps={fps!r}"
        )
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames!r}")
    if fps is not None and fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")


@dataclass(frozen=True)
class VisualConfig(ModelConfig, ServedOptions):
    """Served (``backend.kind: server``), the sampled frames go as JPEG images of at most ``frame_size``
    pixels a side, in time order, before the prompt (which gives their times)."""

    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # the paper used Qwen2.5-VL-72B
    num_frames: int | None = 8  # frames spread evenly over the clip; exclusive with fps
    fps: float | None = None  # frames per second of the clip; exclusive with num_frames
    prompt: str = DEFAULT_PROMPT  # str.format placeholders: {duration}, {frame_times}
    prompt_version: str = "visual_v1"  # the bundled prompt it is; the card says `custom` for another text
    max_new_tokens: int = 256
    video_column: str = "video"
    max_pixels: int | None = None  # per-frame pixel budget; None keeps the processor's
    frame_size: int = 448

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_served()
        if self.frame_size < 16:
            raise ValueError(f"frame_size must be >= 16 pixels, got {self.frame_size}")
        _check_sampling(self.num_frames, self.fps)
        try:
            self.prompt.format(duration="", frame_times="")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(
                "prompt may only use the placeholders {duration} and {frame_times} "
                f"(write other braces as {{{{ and }}}}), got an error: {error!r}"
            ) from error


def mmss(seconds: float) -> str:
    """``seconds`` as ``MM:SS``, rounded down; minutes go past 59 for clips over an hour.

    >>> mmss(75.4)
    '01:15'
    """
    if seconds < 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    whole = int(seconds)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def _window(num_video_frames: int, video_fps: float, start: float | None, end: float | None) -> tuple[int, int]:
    """``[first, stop)``: the frames shown during ``[start, end)`` seconds (``None``: the video's own bounds)."""
    if num_video_frames < 1 or not video_fps > 0:
        raise MediaError(f"video has no usable frames ({num_video_frames} frames at {video_fps} fps)")
    # the tolerance keeps float products like 2.3 * 10 = 23.000000000000004 on frame 23
    first = max(0, math.ceil((start or 0.0) * video_fps - 1e-6))
    stop = num_video_frames if end is None else min(num_video_frames, math.ceil(end * video_fps - 1e-6))
    if stop <= first:
        raise MediaError(
            f"clip [{start}, {end}] s holds no frame of the video ({num_video_frames / video_fps:.2f} s long)"
        )
    return first, stop


def frame_indices(
    num_video_frames: int,
    video_fps: float,
    start: float | None = None,
    end: float | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
) -> list[int]:
    """Indices of the frames to show the model from the clip ``[start, end)`` seconds of a video.

    ``num_frames`` spreads that many frames evenly from the clip's first frame to its last; ``fps``
    takes one every ``1 / fps`` seconds from the clip's first frame. No index repeats.

    >>> frame_indices(100, 10.0, start=2, end=6, num_frames=4)
    [20, 33, 46, 59]
    """
    _check_sampling(num_frames, fps)
    first, stop = _window(num_video_frames, video_fps, start, end)
    if num_frames is not None:
        picked = np.linspace(first, stop - 1, num_frames)
    else:
        picked = np.arange(first, stop, video_fps / fps)
    return sorted({index for index in np.round(picked).astype(int).tolist() if index < stop})


@dataclass
class VideoClip:
    """Frames of one clip, ``(frames, height, width, 3)`` uint8, with their times from the clip start."""

    frames: np.ndarray
    times: list[float]
    duration: float
    metadata: dict[str, Any]  # for the processor: the clip's frame count, the video fps, clip-relative indices


def _video_source(value: Any) -> Any:
    """What decord reads: a path, or a file object over the bytes of a ``{"bytes", "path"}`` cell."""
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return io.BytesIO(value["bytes"])
        value = value.get("path")
    if isinstance(value, (str, os.PathLike)):
        if not os.path.isfile(value):
            raise MediaError(f"video file not found: {os.fspath(value)}")
        return os.fspath(value)
    raise MediaError(
        f"cannot read a video cell of type {type(value).__name__}; give a path or {{'bytes', 'path'}} "
        "(cast a decoded column with datasets.Video(decode=False))"
    )


def read_clip(
    value: Any,
    start: float | None = None,
    end: float | None = None,
    num_frames: int | None = None,
    fps: float | None = None,
) -> VideoClip:
    """Read the frames of the clip ``[start, end)`` seconds of a video; raises :class:`MediaError` if it cannot.

    >>> from fusion_datasets.synthetic import write_video
    >>> clip = read_clip(str(write_video("10fps.mp4", duration=8.0, fps=10)), start=2.0, end=6.0, num_frames=8)
    >>> clip.frames.shape, clip.times[:2]
    ((8, 64, 96, 3), [0.0, 0.6])
    """
    decord = runtime.require("decord", "video")
    source = _video_source(value)
    try:
        reader = decord.VideoReader(source, ctx=decord.cpu(0))
        video_fps = float(reader.get_avg_fps())
        first, stop = _window(len(reader), video_fps, start, end)
        indices = frame_indices(len(reader), video_fps, start, end, num_frames=num_frames, fps=fps)
        frames = reader.get_batch(indices).asnumpy()
    except (RuntimeError, OSError, decord.DECORDError) as error:
        message = str(error).strip().splitlines()
        raise MediaError(f"cannot read video: {message[0] if message else type(error).__name__}") from error
    relative = [index - first for index in indices]
    # The window's own frame count (not the whole video's) gives the processor the right sampled
    # fps, hence the right seconds per temporal patch, when the clip is a part of a longer video.
    metadata = {"total_num_frames": stop - first, "fps": video_fps, "frames_indices": relative}
    return VideoClip(frames, [index / video_fps for index in relative], (stop - first) / video_fps, metadata)


@dataclass
class _Describer:
    model: Any
    processor: Any
    device: str


@register("visual", "video-llm")
class VideoDescriber(ServedExpert, ModelStep[VisualConfig]):
    """Writes ``video_caption``: ``MM:SS - description`` lines of what is visible in the clip's video.

    Rows without a video get ``None`` and no error; a video that cannot be read gets ``None`` and an error.

    Example:
        >>> expert = VideoDescriber(model=str(tiny_zoo["qwen2.5-vl"]), num_frames=4)  # Qwen/Qwen2.5-VL-7B-Instruct
        >>> expert({"audio": ["a.wav"], "video": [None]})
        {'video_caption': [None], 'errors': [[]]}
    """

    stage = "visual"
    config_class = VisualConfig
    # not in QA: answers must not describe what is seen
    fusion_texts: ClassVar[dict[str, str]] = {"video description": "video_caption"}
    coverage: ClassVar[dict[str, str]] = {"video": "video_caption"}

    def reads(self) -> tuple[str, ...]:
        return ("start", "end", self.config.video_column)

    def features(self) -> dict[str, Any]:
        from datasets import Value

        return {"video_caption": Value("string")}

    def _load(self, device: str, dtype: Any) -> _Describer:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.check_architecture(SUPPORTED_MODEL_TYPES)
        kwargs = self.pretrained_kwargs()
        processor = AutoProcessor.from_pretrained(self.config.model, **kwargs)
        processor.tokenizer.padding_side = "left"  # generation continues every row from its last token
        model = AutoModelForImageTextToText.from_pretrained(self.config.model, dtype=dtype, **kwargs)
        return _Describer(model.to(device).eval(), processor, device)

    def _read_clips(self, media: MediaBatch) -> list[VideoClip | None]:
        starts, ends = media.column("start"), media.column("end")
        clips: list[VideoClip | None] = []
        for row, value in enumerate(media.column(self.config.video_column)):
            clip = None
            if value is not None:
                try:
                    clip = read_clip(value, starts[row], ends[row], self.config.num_frames, self.config.fps)
                except MediaError as error:
                    media.add_error(row, self.stage, str(error))
            clips.append(clip)
        return clips

    def prompt_for(self, clip: VideoClip) -> str:
        """The configured prompt filled in with the clip's duration and frame times."""
        times = ", ".join(mmss(time) for time in clip.times)
        return self.config.prompt.format(duration=mmss(clip.duration), frame_times=times)

    def request(self, clip: VideoClip) -> list[dict[str, Any]]:
        """The content parts of ``clip``'s request to a server: its frames as images, then the prompt."""
        frames = [image_part(frame, self.config.frame_size) for frame in clip.frames]
        return [*frames, {"type": "text", "text": self.prompt_for(clip)}]

    def _videos_kwargs(self, processor: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"do_sample_frames": False}  # the frames are already sampled
        if (most := self.config.max_pixels) is not None:
            least = min(processor.video_processor.size.shortest_edge, most)
            kwargs["size"] = {"shortest_edge": least, "longest_edge": most}
        return kwargs

    def _describe(self, describer: _Describer, clips: list[VideoClip]) -> list[str]:
        import torch

        processor = describer.processor
        texts = [
            processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": self.prompt_for(clip)}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for clip in clips
        ]
        # The timing goes through video_metadata: videos_kwargs={"fps": ...} is ignored for frame
        # arrays in transformers 5.24 (the processor then assumes 24 fps).
        inputs = processor(
            text=texts,
            videos=[clip.frames for clip in clips],
            video_metadata=[clip.metadata for clip in clips],
            videos_kwargs=self._videos_kwargs(processor),
            return_tensors="pt",
            padding=True,
        ).to(describer.device)  # the model casts the pixels to its own dtype
        with torch.inference_mode():
            generated = describer.model.generate(**inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def process(self, media: MediaBatch, rank: int | None = None) -> dict[str, list]:
        outputs = self.empty_outputs(media.size)
        clips = self._read_clips(media)
        rows = [row for row, clip in enumerate(clips) if clip is not None]
        if not rows:
            return outputs  # a batch without any video never loads the model
        if self.config.backend is not None:
            captions = ask_server(self.config, media, self.stage, {row: self.request(clips[row]) for row in rows},
                                  self.config.max_new_tokens)
        else:
            describer = self.load(rank, self._load)
            captions = self.run_guarded(media, rows, lambda subset: self._describe(describer,
                                                                                  [clips[r] for r in subset]))
        for row, caption in captions.items():
            outputs["video_caption"][row] = caption
        return outputs
