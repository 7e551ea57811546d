"""The review page: one HTML file with its style, script and data inlined, served or exported.

The same page serves both: the server renders it with judging on, the export (``review OUT --export DIR``)
writes it read-only beside copies of the sampled clips and the calibration plot, so the folder opens
anywhere without the server and names no machine path.

Example:
    >>> from fusion_datasets.review.session import open_review
    >>> page = export_review(open_review("out"), "review-page")  # "out": a run's output folder
    >>> page.parent.name, page.name
    ('review-page', 'index.html')
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from fusion_datasets.errors import UserError
from fusion_datasets.files import write_bytes_atomically, write_text_atomically
from fusion_datasets.review.session import ReviewSession

SERVED_MEDIA = "media/{index}/{kind}"
EXPORTED_MEDIA = "media/{index}-{kind}{suffix}"
EXPORTED_PLOT = "calibration.png"


def _asset(name: str) -> str:
    return resources.files("fusion_datasets.review").joinpath("static", name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``</script>``, no HTML comment, whatever the captions say."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(data: dict[str, Any]) -> str:
    """The page for ``data`` (:meth:`ReviewSession.page_data`), self-contained."""
    return (_asset("review.html").replace("/*STYLE*/", _asset("review.css"))
            .replace("/*SCRIPT*/", _asset("review.js")).replace("/*DATA*/", _script_json(data)))


def export_review(session: ReviewSession, directory: str | Path) -> Path:
    """Write the read-only page of ``session`` to ``directory/index.html`` with its clips under ``media/``."""
    folder = Path(directory).expanduser().resolve()
    if folder == session.root or session.root in folder.parents:
        raise UserError(f"--export {directory}: choose a folder outside the output folder")
    if folder.exists() and any(folder.iterdir()) and not (folder / "index.html").is_file():
        raise UserError(f"--export {directory}: the folder exists and holds other files; give a new or empty one")
    for index, clip in enumerate(session.clips):
        for kind, media in (("audio", clip.audio), ("video", clip.video)):
            if media is None:
                continue
            target = folder / EXPORTED_MEDIA.format(index=index, kind=kind, suffix=media.suffix)
            if media.data is not None:
                write_bytes_atomically(target, media.data)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(media.path, target)  # type: ignore[arg-type]
    plot = session.calibration_plot()
    if plot is not None:
        shutil.copyfile(plot, folder / EXPORTED_PLOT)
    data = session.page_data(EXPORTED_MEDIA, EXPORTED_PLOT, editable=False)
    return write_text_atomically(folder / "index.html", render_page(data))
