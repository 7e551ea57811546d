"""Test doubles for the Hugging Face Hub, which tests cannot reach: :class:`LocalHub` (the API) and
:func:`local_hub_files` (``hf://`` paths)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from huggingface_hub import CommitInfo, CommitOperationAdd, CommitOperationDelete, HfApi, RepoUrl
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, hf_raise_for_status

LFS_SUFFIXES = (".parquet", ".png")  # what the Hub's default .gitattributes stores in LFS


class LocalHub(HfApi):
    """A test double for the Hugging Face Hub: an ``HfApi`` whose repository calls work on a local folder.

    ``create_repo``, ``create_commit``, ``upload_folder`` (in huggingface_hub 2.x the resumable large-folder
    upload; ``upload_large_folder`` is gone) and ``list_repo_tree`` copy into or read from ``remote`` and
    record each call in ``calls``. ``failures`` are errors that the next ``create_commit`` calls raise, one
    per call, before writing anything. Parquet and PNG files are listed with LFS metadata (size, sha256),
    as on the Hub.
    """

    def __init__(self, remote: Path) -> None:
        super().__init__(token=False)
        self.remote = remote
        self.calls: list[tuple[str, dict]] = []
        self.failures: list[Exception] = []

    def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, "private": private, "repo_type": repo_type,
                                           "exist_ok": exist_ok}))
        self.remote.mkdir(parents=True, exist_ok=True)
        prefix = "" if repo_type in (None, "model") else f"{repo_type}s/"
        return RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, **kwargs):
        operations = list(operations)
        paths = sorted(op.path_in_repo for op in operations)
        self.calls.append(("create_commit", {"repo_id": repo_id, "repo_type": repo_type,
                                             "message": commit_message, "paths": paths}))
        if self.failures:
            raise self.failures.pop(0)
        for operation in operations:
            target = self.remote / operation.path_in_repo
            if isinstance(operation, CommitOperationDelete):
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(operation.path_or_fileobj, bytes):
                target.write_bytes(operation.path_or_fileobj)
            else:
                shutil.copyfile(operation.path_or_fileobj, target)
        return CommitInfo(commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/{len(self.calls)}",
                          commit_message=commit_message, commit_description="", oid=f"{len(self.calls):040x}")

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, ignore_patterns=None,
                      commit_message=None, **kwargs):
        folder = Path(folder_path)
        names = [path.relative_to(folder).as_posix() for path in sorted(folder.rglob("*")) if path.is_file()]
        ignored = [*(ignore_patterns or []), *DEFAULT_IGNORE_PATTERNS]
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                      for name in filter_repo_objects(names, ignore_patterns=ignored)]
        return self.create_commit(repo_id, operations, commit_message=commit_message, repo_type=repo_type)

    def list_repo_tree(self, repo_id, path_in_repo=None, *, recursive=False, repo_type=None, **kwargs):
        self.calls.append(("list_repo_tree", {"repo_id": repo_id, "repo_type": repo_type}))
        for path in sorted(self.remote.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                lfs = ({"size": len(data), "oid": hashlib.sha256(data).hexdigest(), "pointerSize": 134}
                       if path.suffix in LFS_SUFFIXES else None)
                git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                name = path.relative_to(self.remote).as_posix()
                yield RepoFile(path=name, size=len(data), oid=git_oid, lfs=lfs)

    def commits(self) -> list[dict]:
        return [call for name, call in self.calls if name == "create_commit"]


def http_error(status: int, body: str, url: str = "https://huggingface.co/api/datasets/org/name/commit/main"
               ) -> HfHubHTTPError:
    """The error huggingface_hub raises for a real HTTP response with this status and body (for ``failures``)."""
    response = httpx2.Response(status, request=httpx2.Request("POST", url), text=body)
    try:
        hf_raise_for_status(response)
    except HfHubHTTPError as error:
        return error
    raise ValueError(f"HTTP {status} is not an error")


def use_local_hub_files(remote: str | Path) -> type:
    """From now on in this process, ``hf://`` paths read the local folder ``remote`` (``hf://datasets/org/name/x``
    is ``remote/datasets/org/name/x``) instead of the Hub: fsspec's ``hf`` protocol, which is huggingface_hub's
    ``HfFileSystem``, becomes an fsspec ``DirFileSystem`` over ``remote``. It stands in for the Hub's files only:
    revisions (``@rev``), tokens and the Hub's own paths are not checked. Returns the class it replaced. A Ray
    worker gets it as its ``worker_process_setup_hook``."""
    import fsspec
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.local import LocalFileSystem

    class LocalHubFileSystem(DirFileSystem):
        protocol = "hf"

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(path=str(remote), fs=LocalFileSystem())

    hub = fsspec.get_filesystem_class("hf")
    fsspec.register_implementation("hf", LocalHubFileSystem, clobber=True)
    return hub


@contextmanager
def local_hub_files(remote: Path) -> Iterator[None]:
    """Inside the block, ``hf://`` paths read the local folder ``remote`` (:func:`use_local_hub_files`)."""
    import fsspec

    hub = use_local_hub_files(remote)
    try:
        yield
    finally:
        fsspec.register_implementation("hf", hub, clobber=True)
