"""A local stand-in for YouTube: a threaded HTTP server on 127.0.0.1 that serves real mp4 files by YouTube id,
and answers as told: 404, 403, 429 first then 200, a stall, a body cut short, a slow body.

``fetch --url-template http://127.0.0.1:PORT/{id}.mp4`` sends yt-dlp's generic extractor to it. The server
also works as an HTTP proxy (it serves the path of an absolute URL) and keeps what each request carried.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fusion_datasets.testing import media


@dataclass
class Behaviour:
    """How the server answers for one id; every field may change between runs of a test."""

    status: int = 200
    rate_limited: int = 0  # answers 429 to this many requests first
    stall: float = 0.0  # seconds of silence after the first bytes
    truncate: bool = False  # Content-Length of the whole file, half of it sent
    slow: threading.Event | None = None  # the body's second half waits for this event


@dataclass
class MediaServer:
    files: dict[str, bytes] = field(default_factory=dict)
    behaviour: dict[str, Behaviour] = field(default_factory=dict)
    requests: Counter = field(default_factory=Counter)
    headers: list[dict[str, str]] = field(default_factory=list)
    started: dict[str, threading.Event] = field(default_factory=dict)  # set when a body starts going out
    port: int = 0

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{id}}.mp4"

    def add(self, ytid: str, path: Path, **behaviour) -> None:
        self.files[ytid] = path.read_bytes()
        self.behaviour[ytid] = Behaviour(**behaviour)
        self.started[ytid] = threading.Event()


def _handler(server: MediaServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            ytid = Path(urlsplit(self.path).path).stem
            server.requests[ytid] += 1
            server.headers.append(dict(self.headers))
            behaviour = server.behaviour.get(ytid)
            if behaviour is None:
                return self._empty(404)
            if behaviour.rate_limited:
                behaviour.rate_limited -= 1
                return self._empty(429)
            if behaviour.status != 200:
                return self._empty(behaviour.status)
            data = server.files[ytid]
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            half = len(data) // 2
            try:
                self.wfile.write(data[:half])
                self.wfile.flush()
                server.started[ytid].set()
                if behaviour.stall:
                    time.sleep(behaviour.stall)
                if behaviour.slow is not None:
                    behaviour.slow.wait(60)
                if behaviour.truncate or behaviour.stall:
                    self.close_connection = True
                    return None
                self.wfile.write(data[half:])
            except OSError:  # the client gave up (a timeout, a killed fetch)
                self.close_connection = True
            return None

    return Handler


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up (a timeout, a killed fetch) is what these tests do on purpose


@pytest.fixture
def media_server() -> Iterator[MediaServer]:
    state = MediaServer()
    httpd = _Quiet(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    for behaviour in state.behaviour.values():
        if behaviour.slow is not None:
            behaviour.slow.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    """Short real mp4 files: ``sound`` (3 s, stereo AAC at 44.1 kHz), ``mute`` (no audio track)."""
    folder = tmp_path_factory.mktemp("videos")
    sound = media.mix(media.speech(3.0, 44100, 2), media.noise(3.0, 44100, 2), gains=[1.0, 0.2])
    return {"sound": media.write_video(folder / "sound.mp4", 3.0, audio=sound, sampling_rate=44100),
            "mute": media.write_video(folder / "mute.mp4", 3.0)}
