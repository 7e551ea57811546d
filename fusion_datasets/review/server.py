"""The review server: the page, the sampled clips and the calibration plot on 127.0.0.1, judgements saved by POST.

Nothing the browser sends is used as a path: a clip is asked for by its place in the sample
(``/media/3/audio``), the plot by its one fixed name; every other path, ``../`` and absolute ones
included, is a 404. Requests must name the server by a loopback host (no DNS rebinding), and a judgement
is accepted only as JSON from the page's own origin.

Example:
    >>> from fusion_datasets.review.session import open_review
    >>> server = start_server(open_review("out"), port=0)  # "out": a run's output folder; port 0: any free port
    >>> server.server_address[0]  # then server.serve_forever()
    '127.0.0.1'
    >>> server.server_close()
"""

from __future__ import annotations

import errno
import json
import logging
import re
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fusion_datasets.errors import UserError
from fusion_datasets.review.clips import Media
from fusion_datasets.review.judgements import hold_judgements
from fusion_datasets.review.page import SERVED_MEDIA, render_page
from fusion_datasets.review.session import ReviewSession

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_MEDIA = re.compile(r"^/media/(?P<index>\d{1,9})/(?P<kind>audio|video)$")
_RANGE = re.compile(r"^bytes=(?P<start>\d*)-(?P<end>\d*)$")
_PLOT = "/calibration.png"
_MAX_BODY = 64 * 1024
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; media-src 'self'; img-src 'self'; style-src 'unsafe-inline'; "
                               "script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


class ReviewServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 over one :class:`ReviewSession`."""

    daemon_threads = True

    def __init__(self, session: ReviewSession, port: int) -> None:
        self.session = session
        self._lock = hold_judgements(session.root, session.store.reviewer)
        try:
            super().__init__((HOST, port), ReviewHandler)
        except OSError:
            self._lock.close()
            raise

    def server_close(self) -> None:
        super().server_close()
        self._lock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a browser dropping a media request it replaced
            logger.debug("%s closed the connection", client_address[0])
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"

    @property
    def hosts(self) -> set[str]:
        """The Host headers a request may carry: this server by a loopback name."""
        port = self.server_address[1]
        return {f"{HOST}:{port}", f"localhost:{port}"}


class ReviewHandler(BaseHTTPRequestHandler):
    server: ReviewServer
    server_version = "fusion-datasets-review"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version  # not Python's version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # http.server names its handlers so
        self._get(body=True)

    def do_HEAD(self) -> None:
        self._get(body=False)

    def do_POST(self) -> None:
        if not self._host_allowed():
            return
        if urlsplit(self.path).path != "/api/judgements":
            return self._send_json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc not in self.server.hosts:
            return self._send_json(HTTPStatus.FORBIDDEN, {"error": "judgements come from the review page only"})
        if self.headers.get_content_type() != "application/json":
            return self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": "send application/json"})
        length = _content_length(self.headers.get("Content-Length"))
        if not 0 < length <= _MAX_BODY:
            return self._send_json(HTTPStatus.BAD_REQUEST, {"error": f"a judgement is 1 to {_MAX_BODY} bytes"})
        try:
            request = json.loads(self.rfile.read(length))
            index, label, note = request["index"], request["label"], request.get("note") or ""
            if not isinstance(index, int) or not isinstance(note, str):
                raise TypeError("index must be a number and note text")
            summary = self.server.session.judge(index, label, note)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            return self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(error)})
        self._send_json(HTTPStatus.OK, {"summary": summary})

    def _host_allowed(self) -> bool:
        if self.headers.get("Host") in self.server.hosts:
            return True
        self._send_json(HTTPStatus.FORBIDDEN, {"error": f"ask for this page as {self.server.url}"})
        return False

    def _get(self, body: bool) -> None:
        if not self._host_allowed():
            return
        path = urlsplit(self.path).path
        session = self.server.session
        if path in ("/", "/index.html"):
            page = render_page(session.page_data(SERVED_MEDIA, _PLOT.lstrip("/"), editable=True)).encode("utf-8")
            return self._send(HTTPStatus.OK, page, "text/html; charset=utf-8", body, _PAGE_HEADERS)
        media = _MEDIA.match(path)
        if media and int(media["index"]) < len(session.clips):
            clip = session.clips[int(media["index"])]
            found = clip.audio if media["kind"] == "audio" else clip.video
            if found is not None:
                return self._send_media(found, body)
        plot = session.calibration_plot() if path == _PLOT else None
        if plot is not None:
            return self._send(HTTPStatus.OK, plot.read_bytes(), "image/png", body, {"Cache-Control": "no-store"})
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", body)

    def _send_media(self, media: Media, body: bool) -> None:
        """The file or bytes of ``media``, or the one byte range asked for (browsers seek with ranges)."""
        try:
            size = media.size()
        except OSError:
            return self._send(HTTPStatus.NOT_FOUND, b"the clip's file is missing\n", "text/plain", body)
        start, end = 0, size - 1
        asked = _RANGE.match(self.headers.get("Range") or "")
        if asked and (asked["start"] or asked["end"]):
            if asked["start"]:
                start, end = int(asked["start"]), min(int(asked["end"] or size - 1), size - 1)
            else:  # "bytes=-N": the last N bytes
                start = max(0, size - int(asked["end"]))
            if start > end:
                headers = {"Content-Range": f"bytes */{size}"}
                return self._send(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, b"", "text/plain", body, headers)
        data = b""
        if body:
            if media.data is not None:
                data = media.data[start:end + 1]
            else:
                with open(media.path, "rb") as file:  # type: ignore[arg-type]
                    file.seek(start)
                    data = file.read(end - start + 1)
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
        status = HTTPStatus.OK
        if asked:
            status, headers["Content-Range"] = HTTPStatus.PARTIAL_CONTENT, f"bytes {start}-{end}/{size}"
        self._send(status, data, media.content_type, body, headers, length=end - start + 1)

    def _send_json(self, status: HTTPStatus, value: dict[str, Any]) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json", True)

    def _send(self, status: HTTPStatus, data: bytes, content_type: str, body: bool,
              headers: dict[str, str] | None = None, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)


def _content_length(header: str | None) -> int:
    """The body's length a ``Content-Length`` header says; 0 where it is missing or not a whole number."""
    return int(header) if header and header.strip().isdecimal() else 0


def start_server(session: ReviewSession, port: int = 8765) -> ReviewServer:
    """A :class:`ReviewServer` bound to 127.0.0.1:``port`` (0: a free port), not yet serving; it holds the
    reviewer's judgements (:func:`~fusion_datasets.review.judgements.hold_judgements`) until closed."""
    try:
        return ReviewServer(session, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {HOST} is in use: pass another --port (0 picks a free one)") from None
        raise
