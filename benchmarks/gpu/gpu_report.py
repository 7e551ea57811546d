"""The GPU kit's results: the JSON that ``run --dry-run --throughput FILE`` reads, and the printed table.

The file keeps the format of ``fusion_datasets/resources/throughput.json`` (``measured_on``, ``clip_seconds``,
``clips_per_second`` per stage: here the toolkit's batched rate) and adds, under keys that
``load_throughput`` ignores, each stage's detail (``stages``) and the projection to the paper's 1.2M clips
(``projection``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PAPER_CLIPS = 1_200_000
SHARE_GOAL = 0.9  # the toolkit should reach 90% of the bare model call's clips/s
ASSUMPTIONS = (
    "weights are random (real architectures and sizes, bf16 where the toolkit runs bf16); only speed is measured",
    ("generation is fixed-length: every generate makes exactly the stage's new_tokens (min_new_tokens = "
     "max_new_tokens), about a real answer's length"),
    ("prompts are tokenised by a 400-token BPE (the tiny zoo's): their text takes more tokens than with the real "
     "vocabularies; audio and video tokens, which dominate, are counted as in the real processors"),
    ("every stage runs on every clip (music captions only where the tagger hears music, so that stage's figure "
     "is an upper bound); one process per GPU, stages one after the other"),
    ("every expert runs in process (paper-inprocess): the paper config serves the audio LLM (sound, music) and a "
     "72B VLM (visual), whose throughput is the served engine's"),
    ("fusion and QA (QwQ-32B in the paper config) run on a served engine (vLLM, SGLang or TGI) on other GPUs: "
     "not measured here and not in the GPU-hours"),
)


def projection(stages: dict[str, dict[str, Any]], clips: int = PAPER_CLIPS) -> dict[str, Any]:
    """GPU-hours per stage for ``clips`` clips at the toolkit's batched rate, and their sum."""
    hours = {name: round(clips / stage["toolkit"]["clips_per_second"] / 3600, 1)
             for name, stage in stages.items() if stage.get("toolkit", {}).get("clips_per_second")}
    return {"clips": clips, "gpu_hours": hours, "total_gpu_hours": round(sum(hours.values()), 1),
            "assumptions": list(ASSUMPTIONS)}


def throughput_file(stages: dict[str, dict[str, Any]], measured_on: str, clip_seconds: float,
                    kit: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: the dry run's fields first, then the kit's detail."""
    return {
        "measured_on": measured_on,
        "clip_seconds": clip_seconds,
        "clips_per_second": {name: stage["toolkit"]["clips_per_second"] for name, stage in stages.items()
                             if stage.get("toolkit", {}).get("clips_per_second")},
        "kit": kit,
        "stages": stages,
        "projection": projection(stages),
    }


def earlier_stages(path: Path) -> dict[str, dict[str, Any]]:
    """The stages of an earlier run's file (``--merge``): a run split over several calls adds up."""
    return json.loads(path.read_text())["stages"]


def write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(path)


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _parameters(count: int) -> str:
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(count)


def table(document: dict[str, Any]) -> str:
    """One line per stage: bare ceiling, toolkit and naive rates, their ratios, memory peaks, GPU-hours."""
    head = (f"{'stage':<12}{'params':>8}{'batch':>6}{'bare c/s':>10}{'tok/s':>9}{'toolkit c/s':>12}{'share':>7}"
            f"{'naive c/s':>10}{'batched/naive':>14}{'peak GiB b/t/n':>18}{'GPU-h 1.2M':>11}  note")
    lines = [f"{document['measured_on']}; {document['clip_seconds']:g} s clips", head]
    hours = document["projection"]["gpu_hours"]
    for name, stage in document["stages"].items():
        bare, toolkit, naive = stage.get("bare", {}), stage.get("toolkit", {}), stage.get("naive", {})
        peaks = "/".join(_number(part.get("peak_gpu_memory_gib"), 1) for part in (bare, toolkit, naive))
        share = toolkit.get("share_of_bare")
        note = "; ".join(filter(None, [f"toolkit under {SHARE_GOAL:.0%} of bare" if share and share < SHARE_GOAL
                                       else "", stage.get("note", "")]))
        lines.append(
            f"{name:<12}{_parameters(stage.get('parameters', 0)):>8}{_number(stage.get('batch_size'), 0):>6}"
            f"{_number(bare.get('clips_per_second')):>10}{_number(toolkit.get('tokens_per_second'), 0):>9}"
            f"{_number(toolkit.get('clips_per_second')):>12}{_number(toolkit.get('share_of_bare')):>7}"
            f"{_number(naive.get('clips_per_second')):>10}{_number(naive.get('batched_speedup')):>14}"
            f"{peaks:>18}{_number(hours.get(name), 1):>11}  {note}")
    total = document["projection"]["total_gpu_hours"]
    lines.append(f"GPU-hours for {document['projection']['clips']:,} clips, measured stages: {total:g} "
                 "(fusion and QA on a served engine, not included)")
    return "\n".join(lines)
