"""The clips of a run's output that a reviewer sees: caption, cues, CLAP score, errors and where the media is.

Everything is read from the output's ``cues`` config (every clip, every stage's output). What the page
shows of a clip (:meth:`ReviewClip.public`) names no machine path: the media is served by the clip's
place in the sample, error messages lose their folders, tokens are redacted.

Example:
    >>> root = Path("out")  # a run's output folder
    >>> clips = read_clips(root, load_candidates(root)[:5])
    >>> public = clips[0].public(0, "media/{index}/{kind}")
    >>> public["caption"], public["audio_url"]
    ('A dog barks twice while one car passes by on the wet road.', 'media/0/audio')
"""

from __future__ import annotations

import math
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from fusion_datasets.errors import UserError
from fusion_datasets.http_errors import redact
from fusion_datasets.layout import config_files
from fusion_datasets.loading import recorded_local_model
from fusion_datasets.public import LOCAL, model_reference

CUE_COLUMNS = ("asr_text", "asr_language", "has_speech", "sound_caption", "has_music", "music_score",
               "music_caption", "video_caption", "caption_ambiguities", "caption_uncertain")
_READ = ("id", "audio", "video", "audio_tags", "caption", "clap_score", "clap_keep", "errors", *CUE_COLUMNS)
# the folders of an absolute path (not a URL's): "/tmp/x/clip.wav" -> "clip.wav"
_FOLDERS = re.compile(r"(?<![\w:/.])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'\"()\[\]]+[/\\])+")


@dataclass(frozen=True)
class Media:
    """A clip's audio or video: a file it references, or bytes embedded in the output."""

    path: Path | None = None
    data: bytes | None = None
    name: str = ""

    @property
    def content_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()

    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]


@dataclass(frozen=True)
class ReviewClip:
    """One captioned clip of the output, as the review needs it."""

    id: str
    caption: str
    audio: Media | None
    audio_reference: str | None  # the ``audio`` value calibrate-filter will read (a path), if any
    video: Media | None = None
    clap_score: float | None = None
    clap_keep: bool | None = None
    tags: list[dict[str, Any]] = field(default_factory=list)
    cues: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def public(self, index: int, media_url: str) -> dict[str, Any]:
        """What the page shows of this clip, the ``index``-th of the sample: no path, no token.

        ``media_url`` is the clip's media address with ``{index}``, ``{kind}`` (audio, video), ``{suffix}``.
        """
        urls = {kind: media_url.format(index=index, kind=kind, suffix=media.suffix)
                for kind, media in (("audio", self.audio), ("video", self.video)) if media is not None}
        return {"index": index, "id": self.id, "caption": self.caption, "clap_score": self.clap_score,
                "clap_keep": self.clap_keep, "tags": self.tags, "cues": self.cues, "errors": self.errors,
                "audio_url": urls.get("audio"), "video_url": urls.get("video")}


@dataclass(frozen=True)
class FilterSettings:
    """The CLAP filter of the run, from its published ``config.yaml``: the model's public name, the threshold;
    ``loadable``: whether ``calibrate-filter`` can load the model by that name here (a Hub id, or a local model
    whose folder the run recorded and which is still there)."""

    model: str | None
    threshold: float | None
    loadable: bool = False


def public_message(text: str) -> str:
    """An error message with folders dropped from absolute paths and tokens redacted.

    Example:
        >>> public_message("cannot open /home/me/clips/a.wav for hf_abcdefghijklmnop")
        'cannot open a.wav for hf_***'
    """
    return redact(_FOLDERS.sub("", text), os.environ.get("HF_TOKEN"))


def output_root(path: str | Path) -> Path:
    """``path`` resolved, if it is a run's output folder (it has ``data/cues/*.parquet``); else a UserError."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"{path} is not a folder: give the output folder of `fusion-datasets run`")
    if not config_files(root, "cues"):
        raise UserError(f"{path} holds no data/cues/*.parquet: give the output folder of `fusion-datasets run` "
                        "(it has README.md, config.yaml and data/)")
    return root


def filter_settings(root: Path) -> FilterSettings:
    """The filter's model and threshold as the run's ``config.yaml`` gives them (None where it does not)."""
    path = root / "config.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else None
    section = (config or {}).get("filter") or {}
    model, threshold = section.get("model"), section.get("threshold")
    model = model and model_reference(model)[0]  # an older config's local path: its name
    loadable = bool(model) and (not model.startswith(LOCAL) or recorded_local_model(root, model) is not None)
    return FilterSettings(model=model, threshold=None if threshold is None else float(threshold), loadable=loadable)


def _media(value: Any, root: Path) -> tuple[Media | None, str | None]:
    """``(media, reference)`` of an ``audio``/``video`` cell: a path string or an Audio ``{bytes, path}``."""
    if isinstance(value, dict):
        data, value = value.get("bytes"), value.get("path")
        if data:
            return Media(data=data, name=Path(value or "clip.wav").name), value
    if not value:
        return None, None
    path = Path(value).expanduser()
    if not path.is_absolute():  # older outputs: relative to the output, else to where the run was started
        path = root / path if (root / path).exists() else path.resolve()
    return Media(path=path, name=path.name), str(path)


def _finite(value: Any) -> Any:
    """``value``, or None for a NaN (the page's JSON has no NaN)."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _clip(row: dict[str, Any], root: Path) -> ReviewClip:
    audio, reference = _media(row.get("audio"), root)
    video, _ = _media(row.get("video"), root)
    tags = [{"label": tag["label"], "score": _finite(tag["score"])} for tag in row.get("audio_tags") or []]
    cues = {name: _finite(row[name]) for name in CUE_COLUMNS if row.get(name) not in (None, "", [])}
    errors = [{"stage": error["stage"], "message": public_message(error["message"])}
              for error in row.get("errors") or []]
    return ReviewClip(id=str(row["id"]), caption=row["caption"], audio=audio, audio_reference=reference,
                      video=video, clap_score=_finite(row.get("clap_score")), clap_keep=row.get("clap_keep"),
                      tags=tags, cues=cues, errors=errors)


@dataclass(frozen=True)
class Candidate:
    """A captioned clip before it is read whole: where it is (shard, row) and its filter's verdict."""

    shard: Path
    row: int
    clap_score: float | None
    clap_keep: bool | None


def load_candidates(root: Path) -> list[Candidate]:
    """Every clip of the output at ``root`` that has a caption; only the few columns sampling needs are read."""
    found = []
    for shard in config_files(root, "cues"):
        names = pq.read_schema(shard).names
        table = pq.read_table(shard, columns=[n for n in ("caption", "clap_score", "clap_keep") if n in names])
        columns = table.to_pydict()
        blank = [None] * table.num_rows
        verdicts = zip(columns["caption"], columns.get("clap_score", blank), columns.get("clap_keep", blank))
        found.extend(Candidate(shard, row, score, keep)
                     for row, (caption, score, keep) in enumerate(verdicts) if caption)
    return found


def read_clips(root: Path, chosen: list[Candidate]) -> list[ReviewClip]:
    """The ``chosen`` clips read whole, in the order given."""
    rows: dict[tuple[Path, int], dict[str, Any]] = {}
    for shard in dict.fromkeys(candidate.shard for candidate in chosen):
        indices = [candidate.row for candidate in chosen if candidate.shard == shard]
        table = pq.read_table(shard, columns=[n for n in _READ if n in pq.read_schema(shard).names])
        rows.update(zip(((shard, i) for i in indices), table.take(indices).to_pylist()))
    return [_clip(rows[candidate.shard, candidate.row], root) for candidate in chosen]
