"""Per-process runtime: the device a rank uses, its dtype, a model cache, optional dependencies.

Models never live on the objects that ``datasets.map`` hashes: they live in this module's cache,
one copy per process, keyed by what identifies a loaded model.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from fusion_datasets.errors import MissingExtra

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

T = TypeVar("T")

_MODELS: dict[Hashable, Any] = {}
_LOCK = threading.Lock()


def _single_thread_after_fork() -> None:
    # GNU OpenMP's thread pool does not survive fork: a forked datasets worker (num_proc > 1) whose
    # parent already ran torch would hang in its first parallel op. One thread per worker also avoids
    # oversubscribing the cores the workers share.
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_single_thread_after_fork)


def cache_dir() -> Path:
    """fusion_datasets' own cache: ``$FUSION_DATASETS_CACHE``, else ``fusion_datasets`` in the user cache."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fusion_datasets"
    return Path(os.environ.get("FUSION_DATASETS_CACHE") or default).expanduser()


class ProcessRank(NamedTuple):
    rank: int  # this process among all processes of the run
    world_size: int  # how many processes the run has
    local_rank: int  # this process among those on its machine (its GPU)


def _int_variable(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    try:
        return default if text is None else int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


def process_rank(environ: Mapping[str, str] | None = None) -> ProcessRank:
    """Where this process stands in a multi-process run: ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``.

    ``torchrun`` and ``accelerate launch`` set them; a process started alone is rank 0 of 1.

    Example:
        >>> process_rank({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
        ProcessRank(rank=3, world_size=4, local_rank=1)
    """
    environ = os.environ if environ is None else environ
    rank, world_size = _int_variable(environ, "RANK", 0), _int_variable(environ, "WORLD_SIZE", 1)
    if not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank} and WORLD_SIZE={world_size}")
    return ProcessRank(rank, world_size, _int_variable(environ, "LOCAL_RANK", rank))


def process_gpus(device_count: int, environ: Mapping[str, str] | None = None) -> list[int]:
    """The indices of the ``device_count`` visible GPUs this process uses; its map workers share them out.

    A process started alone uses every GPU. Processes launched together on a machine (``torchrun``,
    ``accelerate launch``: ``LOCAL_RANK`` of ``LOCAL_WORLD_SIZE``) split the GPUs among themselves, local
    rank ``r`` taking ``r``, ``r + LOCAL_WORLD_SIZE``, ...; with fewer GPUs than processes, or without
    ``LOCAL_WORLD_SIZE`` to know how many share the machine, a process keeps to the one GPU
    ``LOCAL_RANK % device_count``. So no two processes' workers meet on a GPU that another one could have.

    Example:
        >>> process_gpus(8, {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
        [1, 3, 5, 7]
    """
    environ = os.environ if environ is None else environ
    place = process_rank(environ)
    local_processes = _int_variable(environ, "LOCAL_WORLD_SIZE", 1 if place.world_size == 1 else 0)
    if 0 < local_processes <= device_count:
        return list(range(place.local_rank % local_processes, device_count, local_processes))
    return [place.local_rank % device_count]


def resolve_device(device: str | None = None, rank: int | None = None) -> str:
    """The device for a worker: ``device`` when given, else one of this process's GPUs, else ``cpu``.

    ``rank`` is the ``datasets.map`` worker's (``num_proc`` > 1): worker ``w`` takes the ``w % k``-th of the
    ``k`` GPUs of :func:`process_gpus`; a process without workers takes its first.
    """
    if device and device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        gpus = process_gpus(torch.cuda.device_count())
        return f"cuda:{gpus[(rank or 0) % len(gpus)]}"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto`` is float32 on the CPU and bfloat16 (float16 where unsupported) on a GPU."""
    import torch

    if dtype == "auto":
        if not device.startswith("cuda"):
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    allowed = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in allowed:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(allowed)}, got {dtype!r}")
    return allowed[dtype]


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """``datasets``' progress bars on or off inside the block, as they were after it.

    A run shows its parts and each pass of the experts over a part; the bookkeeping maps between them
    (preparing rows, writing Parquet, filtering captions) would only add lines.
    """
    import datasets

    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.enable_progress_bars() if enabled else datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars() if was_enabled else datasets.disable_progress_bars()


def cached_model(key: Hashable, load: Callable[[], T]) -> T:
    """Return the object cached under ``key`` in this process, calling ``load()`` the first time."""
    with _LOCK:
        if key not in _MODELS:
            logger.debug("loading %s", key)
            _MODELS[key] = load()
        return _MODELS[key]


def clear_model_cache() -> None:
    """Forget every loaded model of this process (the next use loads it again)."""
    with _LOCK:
        _MODELS.clear()


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or fail with the exact install line that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(f"{module} is needed here but is not installed: pip install 'fusion-datasets[{extra}]'") \
            from error


_INTERRUPTED = threading.Event()
_DEFERRING = threading.Event()  # inside uninterruptible(): a Ctrl-C waits for its end


def stop_on_interrupt() -> None:
    """Make Ctrl-C stop a run even where a library swallows ``KeyboardInterrupt``.

    ``datasets`` hashes every transform inside a bare ``except``, so a Ctrl-C that lands there is lost
    and the run would go on. The handler installed here also records the interrupt, and
    :func:`raise_if_interrupted` raises it again at the next check (after each pass, before a commit).
    A process started with SIGINT ignored (a background job) is left as it is.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return

    def interrupt(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        if not _DEFERRING.is_set():
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)


@contextmanager
def uninterruptible() -> Iterator[None]:
    """A Ctrl-C in this block (a commit: milliseconds) stops the run at its end, not in its middle.

    Needs :func:`stop_on_interrupt`'s handler (the command line's); SIGKILL is another matter: what a commit
    does is ordered so that a kill at any point leaves a consistent output.
    """
    _DEFERRING.set()
    try:
        yield
    finally:
        _DEFERRING.clear()
    raise_if_interrupted()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed since :func:`stop_on_interrupt`, even if it was swallowed."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt
