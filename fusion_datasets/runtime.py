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
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

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


def resolve_device(device: str | None = None, rank: int | None = None) -> str:
    """The device for a worker: ``device`` when given, else ``cuda:{rank % n}`` with GPUs, else ``cpu``."""
    if device and device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{(rank or 0) % torch.cuda.device_count()}"
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


def cached_model(key: Hashable, load: Callable[[], T]) -> T:
    """Return the object cached under ``key`` in this process, calling ``load()`` the first time."""
    with _LOCK:
        if key not in _MODELS:
            logger.info("loading %s", key)
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
        raise ImportError(
            f"{module} is needed here but is not installed: pip install 'fusion-datasets[{extra}]'"
        ) from error
