"""The engines that run a plan over the parts of a run: ``local`` (this process) and ``ray`` (Ray Data)."""

from fusion_datasets.pipeline.executors.base import Executor, make_executor

__all__ = ["Executor", "make_executor"]
