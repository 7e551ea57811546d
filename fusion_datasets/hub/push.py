"""Publish a run's output folder to a Hub dataset: part by part while a run goes, or a finished folder.

The token is huggingface_hub's own business (``HF_TOKEN`` or ``hf auth login``): this module never passes
one, and every message it logs or raises names the repository and the HTTP status, with tokens scrubbed.

Usage (it uploads, so it is not run as a doctest)::

    publisher = HubPublisher("my-org/fusion-captions")
    publisher.publish(root, [root / "data/cues/part-3fa9c2d1e0b4-0000.parquet"], "0")  # a part, while a run goes
    push_folder("output", "my-org/fusion-captions")  # 'https://huggingface.co/datasets/my-org/fusion-captions'
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fusion_datasets.http_errors import is_transient, redact, retry_delay
from fusion_datasets.layout import CARD, CONFIGS, config_files, hub_configs
from fusion_datasets.runtime import cache_dir

if TYPE_CHECKING:
    from huggingface_hub import HfApi

logger = logging.getLogger(__name__)

T = TypeVar("T")

_HUB_OUTPUT = re.compile(r"hf://datasets/(?P<org>[A-Za-z0-9][\w.-]*)/(?P<name>[A-Za-z0-9][\w.-]*)/?")
# the runner's atomic writes leave ".<name>.<pid>.tmp" behind when killed; caches are never part of a dataset,
# nor are reviewers' judgements (`fusion-datasets review`: they name the clips by their paths on this machine)
PART_FOLDERS = ("data/", "state/")  # where an output's parts are: their Parquet files and their state
IGNORED = [".*.tmp", "*/.*.tmp", ".cache/*", "*/.cache/*", "__pycache__/*", "*/__pycache__/*", "review/*"]


class HubError(RuntimeError):
    """A Hub call that failed for good; the message names the repository and the HTTP status."""

    def __init__(self, message: str, repo_id: str, status: int | None) -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.status = status


def parse_hub_output(path: str) -> str | None:
    """``"hf://datasets/ORG/NAME"`` -> ``"ORG/NAME"``; a local path -> ``None``.

    Example:
        >>> parse_hub_output("hf://datasets/my-org/captions"), parse_hub_output("output/captions")
        ('my-org/captions', None)
    """
    if not path.startswith("hf://"):
        return None
    match = _HUB_OUTPUT.fullmatch(path)
    if match is None:
        raise ValueError(f"output {path!r} is not a Hub dataset: expected hf://datasets/ORG/NAME")
    return f"{match['org']}/{match['name']}"


def staging_dir(repo_id: str) -> Path:
    """The local folder a run with an ``hf://`` output writes before pushing: its resume state.

    It is ``hub/ORG/NAME`` in :func:`fusion_datasets.runtime.cache_dir` (``$FUSION_DATASETS_CACHE``).
    """
    return cache_dir() / "hub" / repo_id


class HubPublisher:
    """Commits files to one Hub repository (a dataset unless ``repo_type`` says otherwise), which it creates
    (or finds) once.

    Transient failures (429, 5xx, connection errors, timeouts) are retried up to ``max_retries`` times
    with exponential backoff (``backoff`` seconds first, full jitter); others raise :class:`HubError` at once.
    """

    def __init__(self, repo_id: str, private: bool = False, api: HfApi | None = None, *,
                 repo_type: str = "dataset", max_retries: int = 5, backoff: float = 2.0) -> None:
        from huggingface_hub import HfApi

        self.repo_id = repo_id
        self.repo_type = repo_type
        self.api = api if api is not None else HfApi()
        self.max_retries = max_retries
        self.backoff = backoff
        self.url = str(self.call("create the repository", self.api.create_repo, repo_id, repo_type=repo_type,
                                 private=private, exist_ok=True))
        self._remote: dict[str, tuple[str, int, str]] | None = None  # path -> (hash kind, size, hash)

    def call(self, action: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)``, retried while it fails transiently; Hub errors become HubError."""
        from huggingface_hub.errors import HfHubHTTPError

        attempt = 0
        while True:
            try:
                return function(*args, **kwargs)
            except Exception as error:
                transient = is_transient(error)
                if not transient and not isinstance(error, HfHubHTTPError):
                    raise
                if not transient or attempt >= self.max_retries:
                    # from None: the original message may hold what redact() removes from ours
                    raise _hub_error(error, self.repo_id, self.repo_type, action, attempt) from None
                delay = retry_delay(self.backoff, attempt)
                attempt += 1
                logger.warning("%s; retry %d of %d in %.1f s",
                               _describe(error, f"Hub {self.repo_type} {self.repo_id}", action),
                               attempt, self.max_retries, delay)
                time.sleep(delay)

    def pushed_files(self) -> list[str]:
        """The paths already in the repository (listed from the Hub once, and again after each commit)."""
        return sorted(self._remote_files())

    def stale_parts(self, root: Path, left_out: Collection[str] = ()) -> list[str]:
        """The data and state files of parts the repository holds and the output ``root`` no longer has (or
        leaves out): a redo's replaced parts, to take out in the commit that brings their new generation in."""
        return [name for name in self.pushed_files() if name.startswith(PART_FOLDERS)
                and (name in left_out or not (root / name).is_file())]

    def publish(self, root: Path, files: Sequence[Path], message: str, deleted: Sequence[str] = ()) -> None:
        """Commit ``files`` (their paths in the repository are relative to ``root``) in one commit, and the
        removal of the ``deleted`` paths the repository holds.

        Files the Hub already holds with the same size and sha256 are left out; nothing left, no commit.
        """
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        remote = self._remote_files()
        operations: list[Any] = [CommitOperationDelete(path_in_repo=name) for name in deleted if name in remote]
        for path in files:
            name = Path(path).relative_to(root).as_posix()
            content = hub_card(Path(path)) if name == CARD and self.repo_type == "dataset" else None
            known = remote.get(name)
            if known is not None and _identity(content or Path(path), known) == known:
                logger.debug("%s is already on %s", name, self.repo_id)
                continue
            operations.append(CommitOperationAdd(path_in_repo=name, path_or_fileobj=content or str(path)))
        if not operations:
            logger.info("%s: nothing new to push for %r", self.repo_id, message)
            return
        self.call(f"commit {len(operations)} file(s) to", self.api.create_commit, self.repo_id, operations,
                  commit_message=message, repo_type=self.repo_type)
        logger.info("%s: pushed %d files (%s)", self.repo_id, len(operations), message)
        self._remote = None  # listed again when next needed: how the Hub stored them (LFS or git) shows there

    def _remote_files(self) -> dict[str, tuple[str, int, str]]:
        if self._remote is None:
            from huggingface_hub.hf_api import RepoFile

            tree = self.call("list the files of", lambda: list(self.api.list_repo_tree(
                self.repo_id, recursive=True, repo_type=self.repo_type)))
            self._remote = {item.path: ("sha256", item.size, item.lfs.sha256) if item.lfs else
                            ("git", item.size, item.blob_id) for item in tree if isinstance(item, RepoFile)}
        return self._remote


def hub_card(card: Path) -> bytes | None:
    """The dataset card at ``card`` as the Hub gets it: its ``configs`` name their files by glob
    (:func:`~fusion_datasets.layout.hub_configs`); ``None`` for a card that declares no configs (kept as it is)."""
    from huggingface_hub import DatasetCard

    loaded = DatasetCard.load(card)
    names = [config["config_name"] for config in loaded.data.configs or []]
    if not names:
        return None
    loaded.data.configs = hub_configs(names)
    return str(loaded).encode()


def _identity(content: Path | bytes, like: tuple[str, int, str]) -> tuple[str, int, str] | None:
    """How the Hub identifies ``content`` (a file's, or bytes), in the kind of ``like`` (an LFS sha256 or a git
    blob id). ``None`` when the sizes differ: no hash is worth reading the file for then.
    """
    size = len(content) if isinstance(content, bytes) else content.stat().st_size
    if size != like[1]:
        return None
    data = content if isinstance(content, bytes) else content.read_bytes()
    if like[0] == "sha256":
        return ("sha256", len(data), hashlib.sha256(data).hexdigest())
    return ("git", len(data), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())


def check_run_output(folder: Path, allow_incomplete: bool = False) -> None:
    """Raise ValueError unless ``folder`` is a finished run's output: README.md with ``configs``, data/."""
    from huggingface_hub import DatasetCard

    readme, data = folder / "README.md", folder / "data"
    if not readme.is_file() or not data.is_dir():
        raise ValueError(f"{folder} is not a run output: expected README.md and data/ (fusion-datasets run)")
    if not DatasetCard.load(readme).data.to_dict().get("configs"):
        raise ValueError(f"{readme} has no `configs` in its YAML: `fusion-datasets card {folder}` adds them")
    stats = folder / "stats.json"
    if not allow_incomplete and stats.is_file() and json.loads(stats.read_text()).get("complete") is False:
        raise ValueError(f"{folder} is mid-run (stats.json says complete: false): rerun the same "
                         "`fusion-datasets run` to finish it, or push its committed state with --allow-partial")


def _not_committed(folder: Path) -> list[str]:
    """The data and state files of ``folder`` that its card does not list: a redo's replaced generation that
    a killed run left behind. A push leaves them out, as readers of the folder do."""
    listed = {path for config in CONFIGS for path in config_files(folder, config)}
    data = [path for path in folder.glob("data/*/*.parquet") if path not in listed]
    parts = {path.stem for path in data}
    return [path.relative_to(folder).as_posix() for path in [*data, *(folder / "state").glob("*.json")]
            if path.stem in parts]


def push_folder(folder: str | Path, repo_id: str, private: bool = False, api: HfApi | None = None, *,
                allow_incomplete: bool = False) -> str:
    """Upload a run's output folder to the dataset ``repo_id`` (created if needed); returns its URL.

    ``upload_folder`` is resumable (rerunning skips what is committed) and commits large folders in parts;
    temporary files and caches are left out. The card comes last, in a commit that also takes out the data the
    repository holds of parts this folder no longer has, so that its globs (:func:`hub_card`) name the folder's
    committed state. A folder mid-run is refused unless ``allow_incomplete``, and so is one whose rows name
    files of this machine (:func:`~fusion_datasets.hub.publish.check_publishable`: push its
    :func:`~fusion_datasets.pipeline.outputs.publish_view` instead), before anything is uploaded.
    """
    from fusion_datasets.hub.publish import check_publishable

    folder = Path(folder)
    check_run_output(folder, allow_incomplete)
    check_publishable([path for config in CONFIGS for path in config_files(folder, config)], "auto")
    publisher = HubPublisher(repo_id, private, api)
    left_out = _not_committed(folder)
    publisher.call("upload the folder to", publisher.api.upload_folder, repo_id=repo_id, folder_path=folder,
                   repo_type="dataset", ignore_patterns=[*IGNORED, CARD, *left_out],
                   commit_message=f"Upload {folder.name} with fusion-datasets")
    publisher.publish(folder, [folder / CARD], "Dataset card", deleted=publisher.stale_parts(folder, left_out))
    logger.info("pushed %s to %s", folder, publisher.url)
    return publisher.url


def _describe(error: BaseException, name: str, action: str) -> str:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):  # the server's own words, without the boilerplate around them
        status, detail = f"HTTP {error.response.status_code}", error.server_message or ""
    else:
        status, detail = type(error).__name__, str(error)
    message = f"could not {action} {name} ({status}): {' '.join(detail.split())[:500]}"
    return redact(message, os.environ.get("HF_TOKEN"))


def _hub_error(error: BaseException, repo_id: str, repo_type: str, action: str, retries: int) -> HubError:
    from huggingface_hub.errors import HfHubHTTPError

    status = error.response.status_code if isinstance(error, HfHubHTTPError) else None
    message = _describe(error, f"Hub {repo_type} {repo_id}", action)
    if status in (401, 403):
        message += f"; check that your token (HF_TOKEN or `hf auth login`) may write to {repo_id}"
    elif retries:
        message += f" (after {retries} retries)"
    return HubError(message, repo_id, status)
