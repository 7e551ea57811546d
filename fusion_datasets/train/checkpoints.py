"""The training loop's state and the checkpoints that hold it.

``checkpoints/step-NNNNNNNN/`` holds ``accelerator.save_state`` (model, optimizer, scheduler, RNGs) and,
written last, ``training_state.json``: a folder without it was never finished and is not resumed from.
That file keeps the keys of the plain dict :class:`TrainingState` replaced, so older checkpoints resume.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fusion_datasets.files import write_text_atomically

STATE_FILE = "training_state.json"


@dataclass
class TrainingState:
    """Where a run stands: optimizer steps, the epoch, micro-batches of that epoch done, clips trained.

    ``skipped`` lists undecodable rows: each process' own since the last checkpoint, and on the main
    process also every process' rows gathered at each checkpoint.

    Example:
        >>> TrainingState.from_json(TrainingState(step=3, clips=12).to_json())
        TrainingState(step=3, epoch=0, batches_done=0, clips=12, skipped=[])
    """

    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    clips: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> TrainingState:
        data = json.loads(text)
        return cls(**{item.name: data[item.name] for item in fields(cls)})

    def undecodable(self) -> list[dict[str, Any]]:
        """``skipped`` with each row once: a clip that fails fails again each epoch."""
        return list({json.dumps(item, sort_keys=True): item for item in self.skipped}.values())


def checkpoint_folder(output: Path, step: int) -> Path:
    return output / "checkpoints" / f"step-{step:08d}"


def latest_checkpoint(output: Path) -> Path | None:
    """The checkpoint of the highest step under ``output/checkpoints`` that was completely written."""
    done = [path.parent for path in (output / "checkpoints").glob(f"step-*/{STATE_FILE}")]
    return max(done, key=lambda path: int(path.name.split("-")[1]), default=None)


def save_checkpoint(accelerator: Any, output: Path, state: TrainingState, keep: int) -> None:
    """Save the run at ``state.step``, keeping the ``keep`` newest checkpoints (collective: every process).

    Every process' skipped rows move to the main process' ``state.skipped``; the others' are emptied.
    """
    from accelerate.utils import gather_object

    skipped = gather_object(state.skipped)
    folder = checkpoint_folder(output, state.step)
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        write_text_atomically(folder / STATE_FILE, replace(state, skipped=skipped).to_json())
        older = sorted(path for path in (output / "checkpoints").glob("step-*") if path != folder)
        for old in older[: max(0, len(older) - keep + 1)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    state.skipped = skipped if accelerator.is_main_process else []


def load_checkpoint(accelerator: Any, folder: Path) -> TrainingState:
    """Restore the run saved in ``folder`` and return its state (the skipped rows on the main process)."""
    accelerator.load_state(str(folder))
    state = TrainingState.from_json((folder / STATE_FILE).read_text())
    if not accelerator.is_main_process:
        state.skipped = []
    return state
