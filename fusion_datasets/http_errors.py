"""HTTP failures, shared by the LLM server backend and the Hub publisher: which are worth retrying, how
long to wait before a retry, and messages with no token left in them.

Example:
    >>> redact("401 for Bearer hf_abcdefghijklmnop, key s3cret", "s3cret")
    '401 for Bearer hf_***, key ***'
    >>> str(NotJSONError(200, "http://gpu-1:8080/v1/chat/completions", "<html>\\n<h1>Bad gateway</h1>"))
    "HTTP 200 from http://gpu-1:8080/v1/chat/completions, a body that is not JSON: '<html> <h1>Bad gateway</h1>'"
"""

from __future__ import annotations

import random
import re

EXCERPT_CHARS = 200  # of a body quoted in a message
# huggingface_hub's user access tokens: "hf_" and 30-odd letters and digits (10 suffices to be one)
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{10,}")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with each of ``secrets`` and anything shaped like an HF token replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _HF_TOKEN.sub("hf_***", text)


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first ``limit`` characters of ``text`` on one line (each run of whitespace as one space)."""
    return " ".join(text[:limit].split())


class NotJSONError(Exception):
    """A server answered a success status with a body that is not JSON (a gateway's page, a body cut short)."""

    def __init__(self, status: int, url: str, body: str) -> None:
        super().__init__(f"HTTP {status} from {url}, a body that is not JSON: {excerpt(body)!r}")


def is_transient(error: BaseException) -> bool:
    """Rate limits, server errors, connection errors and timeouts may pass; other 4xx, bad bodies will not."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code
        return status == 429 or status >= 500
    # OfflineModeIsEnabled is a ConnectionError but a setting, not a fault: it is not among these
    return isinstance(error, (httpx2.TransportError, TimeoutError))


def retry_delay(backoff: float, attempt: int) -> float:
    """Seconds to wait before retry ``attempt + 1`` (from 0): "full jitter", uniform in
    ``[0, backoff * 2**attempt]``, so that clients failing together do not retry together."""
    return random.uniform(0, backoff * 2**attempt)
