"""A folder of audio and/or video files with an optional metadata CSV, as pipeline input."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusion_datasets.builders.base import option, register
from fusion_datasets.builders.sources import SourceBuilder, SourceConfig
from fusion_datasets.media_files import pair_media


@dataclass
class FolderConfig(SourceConfig):
    metadata: str | None = option("a CSV of id (the path without its suffix), caption, license, tags (default: "
                                  "metadata.csv in --data-dir, if there)", metavar="FILE")


@register("folder")
class MediaFolder(SourceBuilder):
    """Every audio and video file under the folder, an audio file and the video of the same stem as one
    clip; a metadata CSV adds ``source_caption``, ``license`` and ``tags`` (``;`` or ``,`` between them)."""

    BUILDER_CONFIG_CLASS = FolderConfig
    COLUMNS = ("id",)

    def _metadata(self) -> dict[str, tuple[str, dict[str, str]]]:
        path = Path(self.config.metadata) if self.config.metadata else self.data_dir / "metadata.csv"
        if not path.is_file():
            if self.config.metadata:
                raise FileNotFoundError(f"folder: metadata file {path} not found")
            return {}
        rows = self.read_csv(path, columns=self.COLUMNS)
        return {row["id"]: (f"{path}:{line}", row) for line, row in rows}

    def clips(self) -> Iterator[dict[str, Any]]:
        metadata = self._metadata()
        for key, (audio, video) in pair_media(self.audio_root).items():
            _, row = metadata.pop(key, ("", {}))
            tags = [tag.strip() for tag in re.split(r"[;,]", row.get("tags") or "") if tag.strip()]
            yield {"id": key, "audio": str(audio or video), "video": str(video) if video else None,
                   "source": "folder", "license": row.get("license") or None,
                   "source_caption": row.get("caption") or None,
                   "audio_tags": [{"label": tag, "score": 1.0} for tag in tags]}
        for key, (where, _) in metadata.items():
            self.report.missing_clip(key, where, key)
