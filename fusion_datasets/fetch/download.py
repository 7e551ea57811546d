"""One download with yt-dlp (extra ``fetch``), and what its failures mean for the manifest.

Cookies and a proxy reach yt-dlp through :class:`Access` only: a copy of the cookie file is handed to each
download (yt-dlp rewrites the file it is given), and every message that leaves this module, to the log or to
the manifest, has the proxy, its password and the cookie values replaced by ``***``.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fusion_datasets.errors import UserError
from fusion_datasets.http_errors import redact
from fusion_datasets.runtime import require

logger = logging.getLogger(__name__)

AUDIO_FORMAT = "bestaudio/best"  # the audio stream alone where the platform has one: the smallest that holds it
VIDEO_FORMAT = "bv*[height<=480]+ba/b[height<=480]/bv*+ba/b"

# (status, what the platform says): YouTube's own words as yt-dlp reports them, then HTTP statuses
_STATUS_WORDS = (
    ("private", re.compile(r"private video|video is private", re.IGNORECASE)),
    ("removed", re.compile(r"removed by the uploader|has been removed|account .* (?:terminated|closed)|"
                           r"no longer available|HTTP Error 410", re.IGNORECASE)),
    ("geo-blocked", re.compile(r"not (?:made this video )?available in your country|from your location|"
                               r"geo.?restrict", re.IGNORECASE)),
    ("unavailable", re.compile(r"video unavailable|video is unavailable|HTTP Error 404|does not exist",
                               re.IGNORECASE)),
)
_RATE_LIMITED = re.compile(r"HTTP Error 429|too many requests|confirm you.re not a bot", re.IGNORECASE)
# worth another try within the run: the server was busy or the connection broke (a stall, a body cut short)
_TRANSIENT = re.compile(r"HTTP Error 5\d\d|timed out|bytes read|more expected|incomplete|connection (?:reset|"
                        r"refused|aborted)|remote end closed|temporarily", re.IGNORECASE)


_RATE = re.compile(r"\d+(?:\.\d+)?[KMG]?", re.IGNORECASE)


class FetchFailure(Exception):
    """A segment that could not be fetched: its manifest ``status`` and whether trying again soon may help."""

    def __init__(self, status: str, message: str, transient: bool = False, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.status, self.transient, self.rate_limited = status, transient or rate_limited, rate_limited


def classify(message: str) -> FetchFailure:
    """The failure a yt-dlp error message stands for.

    Example:
        >>> failure = classify("ERROR: [youtube] abc: Private video. Sign in if you've been granted access")
        >>> failure.status, failure.transient
        ('private', False)
        >>> classify("ERROR: [generic] 429: HTTP Error 429: Too Many Requests").rate_limited
        True
    """
    text = " ".join(message.replace("ERROR:", "").split())
    for status, words in _STATUS_WORDS:
        if words.search(text):
            return FetchFailure(status, text)
    return FetchFailure("failed-other", text, transient=bool(_TRANSIENT.search(text)),
                        rate_limited=bool(_RATE_LIMITED.search(text)))


@dataclass(frozen=True)
class Access:
    """What yt-dlp is given to reach the media: a cookie file (Netscape format) and a proxy URL. Never recorded."""

    cookies: str | None = None
    proxy: str | None = None

    def secrets(self) -> tuple[str, ...]:
        """The strings no log line or manifest may hold: the proxy, its password, the cookies' values."""
        found = [self.proxy] if self.proxy else []
        if self.proxy and urlsplit(self.proxy).password:
            found.append(urlsplit(self.proxy).password)
        if self.cookies:
            for line in Path(self.cookies).read_text(encoding="utf-8", errors="replace").splitlines():
                fields = line.split("\t")
                if len(fields) == 7 and not line.startswith("# ") and fields[6].strip():
                    found.append(fields[6].strip())
        return tuple(sorted(set(found), key=len, reverse=True))  # a longer secret first: it may hold a shorter


class _Log:
    """yt-dlp's logger: its lines to this module's log, secrets redacted."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = secrets

    def debug(self, message: str) -> None:
        logger.debug("yt-dlp: %s", redact(message, *self.secrets))

    info = debug

    def warning(self, message: str) -> None:
        logger.info("yt-dlp: %s", redact(message, *self.secrets))

    def error(self, message: str) -> None:
        logger.debug("yt-dlp: %s", redact(message, *self.secrets))  # it is raised, then recorded


@dataclass(frozen=True)
class Downloader:
    """Downloads one media URL into a folder with yt-dlp; raises :class:`FetchFailure`.

    ``rate_limit`` is bytes per second per download (yt-dlp's ``--limit-rate``: ``500K``, ``2M``).
    """

    access: Access = Access()
    video: bool = False
    format: str | None = None
    socket_timeout: float = 20.0
    rate_limit: str | None = None

    def __post_init__(self) -> None:
        if self.rate_limit and not _RATE.fullmatch(self.rate_limit):
            raise UserError(f"--rate-limit {self.rate_limit!r}: give bytes per second, like 500K or 2M")
        if not self.socket_timeout > 0:
            raise UserError(f"--socket-timeout must be > 0, got {self.socket_timeout}")

    def options(self, folder: Path, secrets: tuple[str, ...]) -> dict:
        options = {
            "format": self.format or (VIDEO_FORMAT if self.video else AUDIO_FORMAT),
            "outtmpl": str(folder / "source.%(ext)s"), "paths": {"temp": str(folder)},
            "logger": _Log(secrets), "quiet": True, "noprogress": True, "noplaylist": True,
            "socket_timeout": self.socket_timeout, "retries": 0, "fragment_retries": 0, "extractor_retries": 0,
            "overwrites": True, "continuedl": False, "cachedir": False,
        }
        if self.rate_limit:
            options["ratelimit"] = require("yt_dlp.utils", "fetch").parse_bytes(self.rate_limit)
        if self.access.proxy:
            options["proxy"] = self.access.proxy
        if self.access.cookies:  # a copy: yt-dlp writes its cookie jar back to the file when it closes
            options["cookiefile"] = str(shutil.copyfile(self.access.cookies, folder / "cookies.txt"))
        return options

    def __call__(self, url: str, folder: Path) -> Path:
        """The downloaded file (the whole stream) in ``folder``."""
        yt_dlp = require("yt_dlp", "fetch")
        folder.mkdir(parents=True, exist_ok=True)
        secrets = self.access.secrets()
        try:
            with yt_dlp.YoutubeDL(self.options(folder, secrets)) as downloader:
                info = downloader.extract_info(url, download=True)
        except yt_dlp.utils.YoutubeDLError as error:
            raise classify(redact(str(error), *secrets)) from None
        finally:
            (folder / "cookies.txt").unlink(missing_ok=True)
        files = [Path(item["filepath"]) for item in (info or {}).get("requested_downloads") or []
                 if item.get("filepath")]
        if not files or not files[0].is_file():
            raise FetchFailure("failed-other", "yt-dlp reported no downloaded file")
        return files[0]
