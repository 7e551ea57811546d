"""The dataset card of a run's output folder: ``README.md`` from ``cards/dataset_card.md``, and its plot.

Everything on the card comes from the folder: the resolved ``config.yaml``, loaded by the caller (models, revisions,
prompt hashes, thresholds), ``stats.json`` (counts) and the Parquet files under ``data/<config>/``, read one
column at a time, batch by batch, so a large dataset stays cheap. The YAML metadata goes through
``huggingface_hub.DatasetCardData``; its ``configs`` make ``load_dataset(folder, "captions")`` work.

Example:
    >>> from fusion_datasets.pipeline.config import load_run_config
    >>> render_card("out", load_run_config("out"))
    PosixPath('out/README.md')
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfosDict

from fusion_datasets import __version__
from fusion_datasets.files import write_bytes_atomically, write_text_atomically
from fusion_datasets.http_errors import redact
from fusion_datasets.hub.push import parse_hub_output
from fusion_datasets.layout import CARD, CONFIGS, MANIFEST, card_configs, card_yaml, config_files

if TYPE_CHECKING:  # the card describes a run from its files; its caller loads the config
    from fusion_datasets.pipeline.config import PipelineConfig

TEMPLATE = "dataset_card.md"  # in cards/ (installed as fusion_datasets.cards)
PLOT = "card_stats.png"  # beside README.md, which embeds it with a relative link
CONFIG_DESCRIPTIONS = {
    "cues": "every clip, with every stage's output and its `errors`",
    "captions": "the clips whose fused caption is certain and passed the CLAP filter",
    "qa": "one row per question-answer pair about a kept caption",
}
COUNT_LABELS = {
    "clips": "clips",
    "clips_with_errors": "clips with errors",
    "captioned": "clips with a fused caption",
    "uncertain": "clips the fusion LLM judged uncertain",
    "clap_scored": "captions scored by CLAP",
    "removed_by_filter": "captions removed by the CLAP filter",
    "filter_removal_rate": "filter removal rate",
    "captions": "captions kept (`captions`)",
    "qa_pairs": "QA pairs (`qa`)",
    "qa_skipped": "captions not asked for QA (removed by the CLAP filter)",
    "parts": "parts",
    "complete": "every clip done with this config",
    "seconds_by_stage": "seconds (summed over parts and reruns)",  # nested counters: "<label>: <keys>"
    "llm_usage": "LLM usage",
    "clips_to_do": "input clips not done yet",
    "clips_not_in_input": "clips no longer in the input",
    "input_unreadable": "input folders or remote files that could not be read",
    "parts_with_another_plan": "parts made with another config",
}
# stats.json's per-stage work counters: the card shows their seconds and LLM usage, not every counter
_NOT_ON_CARD = ("errors_by_stage", "stages")
# The Hub's size buckets: (upper bound, name)
_SIZES = (
    (10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"), (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"), (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
)
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class DataSummary:
    """What the card shows of the Parquet files: rows and columns per config, caption lengths and more."""

    files: dict[str, list[str]]  # each config's data files, relative to the output (the committed state)
    rows: dict[str, int]
    columns: dict[str, list[str]]
    sizes: dict[str, int]  # bytes of each config's Parquet files
    features: dict[str, Any]  # each config's ``datasets.Features``, from its Parquet schema
    caption_words: np.ndarray
    coverage: dict[str, int]  # modality -> clips of `cues` with it
    licenses: dict[str, int]  # each clip's own license -> clips (empty: no `license` column)


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket of ``rows``.

    Example:
        >>> size_category(999), size_category(1_200_000)
        ('n<1K', '1M<n<10M')
    """
    return next((name for limit, name in _SIZES if rows < limit), "n>1T")


def _column(files: Sequence[Path], column: str) -> Iterator[pa.Array]:
    """``column`` of ``files``, batch by batch (files without it are skipped): memory stays flat."""
    for path in files:
        parquet = pq.ParquetFile(path)
        if column in parquet.schema_arrow.names:
            for batch in parquet.iter_batches(columns=[column]):
                yield batch.column(0)


def _present(values: pa.Array) -> int:
    """True values of a bool column, non-blank strings of a text column."""
    if pa.types.is_boolean(values.type):
        return int(pc.sum(values).as_py() or 0)
    return int(pc.sum(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)).as_py() or 0)


def summarize(root: Path, coverage: Mapping[str, str]) -> DataSummary:
    """Rows, columns, caption word counts, modality coverage and clip licenses of the data under ``root``.

    ``coverage``: modality -> the column of ``cues`` whose true or non-blank values mean a clip has it.
    """
    files = {name: paths for name in CONFIGS if (paths := config_files(root, name))}
    cues = files.get("cues", [])
    licenses: Counter[str] = Counter()
    for values in _column(cues, "license"):
        for item in pc.value_counts(values).to_pylist():
            licenses[item["values"] or "unknown"] += item["counts"]
    words = [pc.list_value_length(pc.utf8_split_whitespace(values)).drop_null().to_numpy()
             for values in _column(files.get("captions", []), "caption")]
    schemas = {name: pq.read_schema(paths[0]) for name, paths in files.items()}
    return DataSummary(
        files={name: [path.relative_to(root).as_posix() for path in paths] for name, paths in files.items()},
        rows={name: sum(pq.read_metadata(path).num_rows for path in paths) for name, paths in files.items()},
        columns={name: schema.names for name, schema in schemas.items()},
        sizes={name: sum(path.stat().st_size for path in paths) for name, paths in files.items()},
        features={name: Features.from_arrow_schema(schema) for name, schema in schemas.items()},
        caption_words=np.concatenate(words) if words else np.zeros(0, dtype=np.int64),
        coverage={name: sum(map(_present, _column(cues, column))) for name, column in coverage.items()},
        licenses=dict(licenses.most_common()),
    )


AUDIO_FORMS = {
    "embedded": "the clip's audio, embedded in the Parquet files (a `datasets.Audio` column: `load_dataset` decodes "
                "it and the Hub's viewer plays it)",
    "files": "a `datasets.Audio` reference to the clip's file on the machine that made the dataset (it decodes "
             "there, from any folder; published datasets embed the audio or name its source instead)",
    "source": "no audio column: each clip is named by its public source, `source_id` (a YouTube id, or the "
              "clip's file name in its collection) with `start` and `end` in seconds",
    "none": "no audio column: the dataset holds text only",
}


def _leaf_nulls(files: Sequence[Path], leaf: str) -> tuple[int, int] | None:
    """``(nulls, rows)`` of the column ``leaf`` (``audio.bytes``, ``start``) from the Parquet statistics, or ``None``
    where a file lacks it or its statistics."""
    nulls = rows = 0
    for path in files:
        metadata = pq.read_metadata(path)
        paths = [metadata.schema.column(index).path for index in range(metadata.num_columns)]
        if leaf not in paths:
            return None
        for group in range(metadata.num_row_groups):
            statistics = metadata.row_group(group).column(paths.index(leaf)).statistics
            if statistics is None or not statistics.has_null_count:
                return None
            nulls, rows = nulls + statistics.null_count, rows + metadata.row_group(group).num_rows
    return nulls, rows


def audio_form(files: Sequence[Path]) -> tuple[str, bool]:
    """What the ``audio`` column of these Parquet files holds (a key of :data:`AUDIO_FORMS`), and whether some
    rows are segments of their file (``start``/``end`` set). Read from the files' metadata only."""
    if not files:
        return "none", False
    names = pq.read_schema(files[0]).names
    starts = _leaf_nulls(files, "start")
    segments = starts is not None and starts[0] < starts[1]
    if "audio" not in names:
        return ("source" if "source_id" in names else "none"), segments
    embedded = _leaf_nulls(files, "audio.bytes")
    return ("embedded" if embedded is not None and embedded[0] < embedded[1] else "files"), segments


def plot_summary(summary: DataSummary, path: Path) -> Path:
    """Save the caption length histogram and the modality coverage bars as one PNG (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)  # the Agg backend, without pyplot's global state
    lengths, coverage = figure.subplots(1, 2)
    words = summary.caption_words
    if words.size:
        # one bar per word count where that fits, else 40 bins
        bins = np.arange(words.min(), words.max() + 2) - 0.5 if np.ptp(words) < 40 else 40
        lengths.hist(words, bins=bins, color="tab:blue")
        lengths.yaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        lengths.text(0.5, 0.5, "no captions", ha="center", va="center", transform=lengths.transAxes)
    lengths.set(title=f"Caption length ({words.size} captions)", xlabel="words", ylabel="captions")
    clips = summary.rows.get("cues", 0)
    coverage.bar(list(summary.coverage), [100 * count / max(clips, 1) for count in summary.coverage.values()],
                 color="tab:green")
    coverage.set(title=f"Modality coverage ({clips} clips)", ylabel="% of clips", ylim=(0, 100))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return write_bytes_atomically(path, buffer.getvalue())


def _flatten(stats: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """The scalar counters of ``stats`` (nested ones as ``a.b``); histograms and ``_NOT_ON_CARD`` aside."""
    for key, value in stats.items():
        if key in _NOT_ON_CARD:
            continue
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        elif not isinstance(value, (dict, list)):
            yield f"{prefix}{key}", value


def count_label(key: str) -> str:
    """The card's label of a ``stats.json`` counter.

    Example:
        >>> count_label("clips_with_errors"), count_label("llm_usage.qa.retries")
        ('clips with errors', 'LLM usage: qa retries')
    """
    head, _, rest = key.partition(".")
    label = COUNT_LABELS.get(head, head)
    return f"{label}: {rest.replace('.', ' ')}" if rest else label


def count_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The card's count table: every scalar of ``stats.json``, known ones first with readable labels."""
    flat = dict(_flatten(stats))
    rows = []
    known = [key for key in COUNT_LABELS if key in flat]
    for key in known + [key for key in flat if key not in known]:
        rows.append((count_label(key), str(flat[key])))
        if key == "filter_removal_rate" and isinstance(flat[key], float):
            rows.append(("filter removal rate, percent", f"{100 * flat[key]:.1f}%"))
    if flat.get("captions"):
        rows.append(("QA pairs per kept caption", f"{flat.get('qa_pairs', 0) / flat['captions']:.2f}"))
    return rows


def _length_summary(words: np.ndarray) -> dict[str, Any] | None:
    if not words.size:
        return None
    return {"count": int(words.size), "mean": round(float(words.mean()), 1),
            "median": float(np.median(words)), "min": int(words.min()), "max": int(words.max())}


def _source_datasets(config: PipelineConfig) -> list[str]:
    """The input, where it is a Hub dataset id rather than a local path."""
    path = config.input.path
    return [path] if _HUB_ID.fullmatch(path) and not Path(path).exists() else []


def card_data(config: PipelineConfig, summary: DataSummary) -> Any:
    """The card's YAML metadata as a ``huggingface_hub.DatasetCardData``.

    Its ``dataset_info`` (features, rows and bytes per config, as ``push_to_hub`` writes) also keys the
    ``datasets`` cache of a local folder: without it, two output folders of the same name share one entry.
    """
    from huggingface_hub import DatasetCardData

    has_qa = "qa" in summary.rows
    data = DatasetCardData(
        configs=card_configs(summary.files),
        license=config.output.license,
        pretty_name=config.output.pretty_name or _dataset_name(config),
        language=["en"],
        task_categories=["audio-text-to-text", "text-to-audio", "audio-classification"],
        tags=["audio", "audio-captioning", *(["audio-question-answering"] if has_qa else []), "fusionaudio",
              "fusion-datasets", "synthetic"],
        size_categories=[size_category(summary.rows.get("cues", 0))],
        source_datasets=_source_datasets(config) or None,
    )
    DatasetInfosDict({
        name: DatasetInfo(
            features=summary.features[name],
            download_size=summary.sizes[name],
            dataset_size=summary.sizes[name],
            splits=SplitDict({"train": SplitInfo("train", num_bytes=summary.sizes[name], num_examples=rows)}),
        )
        for name, rows in summary.rows.items()
    }).to_dataset_card_data(data)
    return data


def render_card(root: Path | str, config: PipelineConfig) -> Path:
    """Write ``root/README.md`` (the dataset card) and its plot ``root/card_stats.png``; return the README.

    ``root`` is a run's output folder: ``stats.json``, ``manifest.json`` (whose plan describes each step:
    model, revision, prompt version and hash, settings) and ``data/<config>/*.parquet``; ``config`` is the
    run's published ``config.yaml`` (:func:`fusion_datasets.pipeline.config.load_run_config`).
    A token of the Hub or of the LLM server never reaches the card, even where a config field holds one.
    """
    from huggingface_hub import DatasetCard, get_token

    root = Path(root)
    for name in ("stats.json", MANIFEST):
        if not (root / name).is_file():
            raise FileNotFoundError(f"{root / name} is missing: a card renders a run's output folder")
    stats = json.loads((root / "stats.json").read_text(encoding="utf-8"))
    # a clip has a modality when its expert found it, as each expert class says (speech: has_speech)
    summary = summarize(root, {name: column for expert in config.expert_classes()
                               for name, column in expert.coverage.items()})
    plot_summary(summary, root / PLOT)
    # each step as the run's steps described themselves
    steps = json.loads((root / MANIFEST).read_text(encoding="utf-8"))["plan"]
    settings = {step["stage"]: step["settings"] for step in steps}
    clips = summary.rows.get("cues", 0)
    repo_id = parse_hub_output(config.output.path)  # a run published to the Hub as it goes
    template = resources.files("fusion_datasets.cards").joinpath(TEMPLATE).read_text(encoding="utf-8")
    form, segments = audio_form(config_files(root, "captions") or config_files(root, "cues"))
    data = card_data(config, summary)
    card = DatasetCard.from_template(
        data,
        template_str=template,
        title=data.pretty_name,
        version=__version__,
        config_name=config.name,
        source_datasets=_source_datasets(config),
        config_descriptions=CONFIG_DESCRIPTIONS,
        config_rows=summary.rows,
        config_columns=summary.columns,
        steps=steps,
        llm=config.llm,
        clap_threshold=settings.get("clap_filter", {}).get("threshold"),
        music_threshold=settings.get("music", {}).get("music_threshold"),
        counts=count_rows(stats),
        errors_by_stage=stats.get("errors_by_stage", {}),
        plot=PLOT,
        lengths=_length_summary(summary.caption_words),
        coverage=[(name, count, f"{100 * count / max(clips, 1):.1f}%")
                  for name, count in summary.coverage.items()],
        clip_licenses=list(summary.licenses.items()),
        dataset_id=repo_id or root.resolve().name,  # what load_dataset takes: the Hub id, or the folder
        on_hub=repo_id is not None,
        audio=AUDIO_FORMS[form],
        audio_form=form,
        segments=segments,
    )
    token_env = getattr(config.llm, "token_env", None)  # a served LLM's token
    server_token = os.environ.get(token_env) if token_env else None
    return write_text_atomically(root / CARD, redact(str(card), get_token(), server_token))


def render_status_card(root: Path, config: PipelineConfig, files: Mapping[str, Sequence[str]],
                       stats: Mapping[str, Any]) -> Path:
    """Write a short card for an output mid-run: the files of its committed state, and what is left to do.

    Written at every commit (cheap: no data is read), so that readers see one consistent state and are told
    it is not the finished dataset; the full card (:func:`render_card`) is written when a run finishes.
    """
    from huggingface_hub import DatasetCardData

    name = config.output.pretty_name or _dataset_name(config)
    metadata = DatasetCardData(configs=card_configs(files), pretty_name=name).to_dict()
    if stats["complete"]:
        status = ("Every clip of the input is committed; the full card is written when the run ends "
                  "(`fusion-datasets card` writes it now).")
    else:
        status = (f"This output is mid-run (`complete: false` in `stats.json`): {stats.get('clips', 0)} clips "
                  f"committed, {stats['clips_to_do']} input clips to do, {stats['parts_with_another_plan']} "
                  f"parts made by an earlier config (each part's plan is in `state/`). The files listed "
                  "above are one consistent state, each clip once; rerun the same `fusion-datasets run` to "
                  "finish it.")
    return write_text_atomically(root / CARD, f"---\n{card_yaml(metadata)}\n---\n\n# {name}\n\n{status}\n")


def _dataset_name(config: PipelineConfig) -> str:
    """The dataset's own name: its Hub repository's or its folder's (the config's name as a last resort)."""
    return config.output.path.rstrip("/").rsplit("/", 1)[-1] or config.name
