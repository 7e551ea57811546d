"""A local OpenAI-compatible chat server whose answers and latency the caller chooses, for client-side
tests and benchmarks: what it measures is the client (requests in flight, waiting), not a model.

Example:
    >>> from fusion_datasets.chat.backends import ServerBackendConfig, ServerChatBackend
    >>> with StubChatServer(answer=lambda request: "A dog barks.", latency=0.5) as server:
    ...     backend = ServerChatBackend(ServerBackendConfig(model="stub", base_urls=(server.base_url,)))
    ...     answers = backend.generate([[{"role": "user", "content": "What barks?"}]] * 4)
    >>> [answer.text for answer in answers] == ["A dog barks."] * 4, server.requests, server.peak_in_flight
    (True, 4, 4)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Request = dict[str, Any]  # the JSON body of a /v1/chat/completions request


class StubChatServer(ThreadingHTTPServer):
    """Answers each chat request with ``answer(request)`` after ``latency`` seconds (or ``latency(request)``).

    Counts requests and the most that were in flight at once, and keeps each request's headers (``headers``,
    in order of arrival, lower-case names: what a client sent, a token included); runs in a daemon thread on
    127.0.0.1.
    """

    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 would drop a burst of connections

    def __init__(self, answer: Callable[[Request], str], latency: float | Callable[[Request], float] = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.latency = latency if callable(latency) else (lambda request: latency)
        self.requests = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> StubChatServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    def reply(self, request: Request, headers: dict[str, str]) -> bytes:
        with self._lock:
            self.requests += 1
            self.headers.append(headers)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            time.sleep(self.latency(request))
            content = self.answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        return json.dumps({
            "id": f"stub-{self.requests}", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
        }).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else the body waits ~40 ms behind the headers for a delayed ACK

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = self.server.reply(request, headers)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        pass
