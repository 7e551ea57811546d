"""A real local chat server for tests, and a fault-injecting HTTP proxy to put in front of it.

:func:`serve_model` runs ``transformers serve`` (extra ``serve``) on 127.0.0.1 with a local model folder;
:class:`FaultProxy` forwards to it and, as told by :class:`Faults`, answers 500, stalls, or spoils bodies.

Example:
    >>> from fusion_datasets.chat.backends import ServerBackendConfig, ServerChatBackend
    >>> from fusion_datasets.testing.stub_chat import StubChatServer  # serve_model(tiny_zoo["chat-lm"]) takes seconds
    >>> with StubChatServer(answer=lambda request: "A dog barks.") as server:
    ...     with FaultProxy(server.base_url, Faults(fail_first=1)) as proxy:
    ...         backend = ServerChatBackend(ServerBackendConfig(model="stub", base_urls=(proxy.base_url,)))
    ...         backend.generate([[{"role": "user", "content": "What barks?"}]])[0].retries
    1
    >>> [request.status for request in proxy.requests]
    [500, 200]
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class ServerProcess:
    """One ``transformers serve`` subprocess on 127.0.0.1; ``restart()`` keeps its port (and ``base_url``)."""

    def __init__(self, model_dir: str | Path, port: int, continuous_batching: bool = False,
                 startup_timeout: float = 120.0) -> None:
        executable = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
        self.command = [executable, "serve", str(model_dir), "--host", HOST, "--port", str(port),
                        "--device", "cpu",
                        "--log-level", "info"]  # info: uvicorn's access log lines say which requests arrived
        if continuous_batching:
            self.command.append("--continuous-batching")
        self.base_url = f"http://{HOST}:{port}"
        self.startup_timeout = startup_timeout
        self.log_path = Path(tempfile.mkstemp(prefix="transformers-serve-", suffix=".log")[1])
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def log(self) -> str:
        """Everything the server wrote so far, all its runs together."""
        return self.log_path.read_text(errors="replace")

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # unbuffered, so that the log shows each request as soon as it is answered
            self._process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"transformers serve exited with {code}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        logger.info("transformers serve is up at %s (pid %d)", self.base_url, self.pid)
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"transformers serve did not answer /health within {self.startup_timeout} s")

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the process by its PID, and kill it if it is still there after ``grace`` seconds."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(grace)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """SIGKILL now, as a crash would: in-flight requests lose their connection."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def serve_model(model_dir: str | Path, port: int | None = None,
                continuous_batching: bool = False) -> Iterator[ServerProcess]:
    """``transformers serve MODEL_DIR`` on 127.0.0.1 (a free port by default), up until the block ends."""
    server = ServerProcess(model_dir, port or free_port(), continuous_batching)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Faults:
    """What :class:`FaultProxy` does, by request number (0-based, in order of arrival)."""

    # answer ``fail_status`` to the first N requests, then pass through; the failure body echoes the
    # request's headers, as debug servers do, so tests can check that a token in it goes no further
    fail_first: int = 0
    fail_status: int = 500
    stall: frozenset[int] = frozenset()  # wait ``stall_seconds`` before passing these through
    stall_seconds: float = 30.0
    malformed: frozenset[int] = frozenset()  # answer 200 with ``malformed_body``, which is not JSON
    malformed_body: bytes = b'{"choices": [{"message": '  # cut short, as by a broken gateway
    empty: frozenset[int] = frozenset()  # pass through, with the completion's content emptied


@dataclass(frozen=True)
class ProxiedRequest:
    index: int
    method: str
    path: str
    headers: dict[str, str]  # as received, lower-case names
    status: int  # what the proxy answered
    body: bytes = b""  # as received: what the client sent

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 (a thread serving a real port) before ``upstream``, injecting ``faults``."""

    def __init__(self, upstream: str, faults: Faults = Faults()) -> None:
        self.upstream = urlsplit(upstream)
        self.faults = faults
        self._records: list[ProxiedRequest] = []
        self._arrivals = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _ProxyServer((HOST, 0), _ProxyHandler)
        self._server.proxy = self  # type: ignore[attr-defined]
        self.base_url = f"http://{HOST}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._records)

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Reply | None:
        """The reply to one request, or ``None`` when the proxy closed during a stall."""
        with self._lock:
            index = self._arrivals
            self._arrivals += 1
        faults = self.faults
        if index < faults.fail_first:
            echo = {"error": "injected failure", "request_headers": headers}
            reply = _Reply(faults.fail_status, json.dumps(echo).encode())
        else:
            if index in faults.stall and self._closing.wait(faults.stall_seconds):
                return None
            reply = self._forward(method, path, headers, body)
            if index in faults.malformed:
                reply = _Reply(200, faults.malformed_body)
            elif index in faults.empty and reply.status == 200:
                answer = json.loads(reply.body)
                for choice in answer["choices"]:
                    choice["message"]["content"] = ""
                reply.body = json.dumps(answer).encode()
        with self._lock:
            self._records.append(ProxiedRequest(index, method, path, headers, reply.status, body))
        return reply

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)
        passed = {name: value for name, value in headers.items() if name not in ("host", "connection")}
        try:
            connection.request(method, path, body=body, headers=passed)
            response = connection.getresponse()
            content_type = response.headers.get("content-type", "application/json")
            return _Reply(response.status, response.read(), content_type)
        except OSError as error:  # the upstream is down: what a gateway answers
            return _Reply(502, json.dumps({"error": f"upstream unreachable: {error}"}).encode())
        finally:
            connection.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must not hold up close()
    request_queue_size = 128  # the default backlog of 5 drops bursts of concurrent connections


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the servers the backend talks to
    disable_nagle_algorithm = True  # else the body waits ~40 ms behind the headers for a delayed ACK

    def _proxy(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.proxy.handle(self.command, self.path, headers, body)  # type: ignore[attr-defined]
        if reply is None:
            self.close_connection = True
            return
        try:
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout) while we stalled
            self.close_connection = True

    do_GET = do_POST = _proxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's signature
        logger.debug("proxy: " + format, *args)  # the request line only: headers may hold a token
