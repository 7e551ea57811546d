"""The ``fusion-datasets`` command. It parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fusion_datasets import __version__
from fusion_datasets.errors import UserError

DESCRIPTION = """\
Build fine-grained audio caption datasets from your own audio and video, the way FusionAudio-1.2M was built: \
expert models listen to each clip (speech, sound, music, audio tags, the video), an LLM fuses their cues into \
one detailed caption, CLAP filters out hallucinated captions and an LLM writes QA pairs; the result is a \
Hugging Face dataset with its card. The toolkit also turns downloaded corpora and benchmarks into datasets \
(build), evaluates audio models on them (eval), and fine-tunes CLAP (train-clap) and audio LMs (train-audio-lm) \
on the captions and QA pairs.

First steps: `fusion-datasets demo --tiny-models` runs the pipeline on bundled sample clips, offline on the \
CPU; `fusion-datasets run small --input CLIPS/ --output OUT/ --limit 10` captions ten of your clips; \
`fusion-datasets COMMAND --help` says a command's options, and `fusion-datasets build NAME --help` the folder \
layout a builder expects."""

# run's options that set a config field: option (argparse dest) -> the field
_RUN_FIELDS = {"input": "input.path", "output": "output.path", "limit": "input.limit",
               "num_shards": "output.num_shards", "embed_audio": "output.embed_audio", "export": "output.export",
               "audio_root": "output.export_audio_root", "engine": "engine", "ray_address": "ray.address"}


class _HelpFormatter(argparse.HelpFormatter):
    """Keeps a description's paragraphs and options' names whole; says an option's default where it has one
    (not None, off or empty)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(fill(paragraph, width, indent) for paragraph in text.split("\n\n"))

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # --data-dir stays whole

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS) \
                or "(default" in text:
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """The parser of the command and of each sub-command: help in :class:`_HelpFormatter`.

    ``later`` adds arguments only when the parser is used or its help shown: describing every builder imports
    `datasets` (seconds), which ``fusion-datasets --help`` and the other commands need not wait for.
    """

    def __init__(self, *args: Any, later: Callable[[argparse.ArgumentParser], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=_HelpFormatter, **kwargs)
        self._later = later

    def _complete(self) -> None:
        later, self._later = self._later, None
        if later:
            later(self)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def _build_tiny_zoo() -> None:
    """The tiny config's models (the test kit's zoo), built offline on first use and reused after."""
    from fusion_datasets.pipeline.config import tiny_zoo_dir
    from fusion_datasets.testing.zoo import build_tiny_zoo

    build_tiny_zoo(tiny_zoo_dir())


def _tiny_zoo(args: argparse.Namespace) -> int:
    from fusion_datasets.testing.zoo import build_tiny_zoo

    for name, path in build_tiny_zoo(args.directory, names=args.only, overwrite=args.overwrite).items():
        print(f"{name}\t{path}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from fusion_datasets.demo import run_demo

    summary = run_demo(args.output, tiny_models=args.tiny_models)
    print(summary)
    return 0


def _run(args: argparse.Namespace) -> int:
    from fusion_datasets.pipeline.config import load_config, uses_tiny_zoo
    from fusion_datasets.pipeline.runner import PipelineRunner

    given = {key: getattr(args, option) for option, key in _RUN_FIELDS.items()}
    # each value as a JSON scalar, which YAML reads as it is: a folder named 2024 or yes stays a name
    overrides = [*args.set, *(f"{key}={json.dumps(value)}" for key, value in given.items()
                              if value is not None and value is not False)]
    config = load_config(args.config, overrides)
    if not args.dry_run and uses_tiny_zoo(args.config):
        _build_tiny_zoo()
    if args.dry_run:
        from fusion_datasets.pipeline.dryrun import describe_plan, load_throughput

        throughput = load_throughput(args.throughput) if args.throughput else None
        print(describe_plan(config, throughput, args.clips, args.gpu, args.gpus))
        return 0
    result = PipelineRunner(config, retry_errors=args.retry_errors).run()
    stats = result.stats
    done = "complete" if stats["complete"] else f"not complete yet ({stats['clips_to_do']} clips to do)"
    summary = (f"{result.parts_written} parts written; the output holds {stats['clips']} clips, {stats['captions']} "
               f"captions, {stats['qa_pairs']} QA pairs, {stats['clips_with_errors']} clips with errors: {done} "
               "(stats.json in the output has the counts by stage)")
    if result.failed_stages:
        print(f"{summary}. FAILED: {', '.join(result.failed_stages)} failed on every clip it was given "
              "(the errors column of `cues` says why); fix the cause, then rerun with --retry-errors",
              file=sys.stderr)
        return 1
    print(summary)
    return 0


def _card(args: argparse.Namespace) -> int:
    from fusion_datasets.pipeline.card import render_card
    from fusion_datasets.pipeline.config import load_run_config

    print(render_card(args.directory, load_run_config(args.directory)))
    return 0


def _push(args: argparse.Namespace) -> int:
    from fusion_datasets.hub.push import check_run_output, push_folder
    from fusion_datasets.pipeline.outputs import publish_view

    check_run_output(args.directory, args.allow_incomplete)
    url = push_folder(publish_view(args.directory, args.publish_audio), args.repo_id, private=args.private,
                      allow_incomplete=args.allow_incomplete)
    print(url)
    return 0


def _export(args: argparse.Namespace) -> int:
    from fusion_datasets.export import export

    options = {"webdataset": {"split": args.split, "shard_samples": args.shard_samples,
                              "shard_bytes": args.shard_bytes, "with_qa": args.with_qa},
               "lhotse": {}}.get(args.format, {"audio_root": args.audio_root})
    print(export(args.directory, args.format, args.output, **options).line())
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from fusion_datasets.fetch.download import Access, Downloader
    from fusion_datasets.fetch.fetcher import FetchOptions, fetch

    access = Access(cookies=args.cookies, proxy=args.proxy)
    downloader = Downloader(access, video=args.video, format=args.format, socket_timeout=args.socket_timeout,
                            rate_limit=args.rate_limit)
    options = FetchOptions(downloader, jobs=args.jobs, retry=tuple(args.retry), url_template=args.url_template,
                           retries=args.retries, backoff=args.backoff, min_fraction=args.min_fraction,
                           labels=args.labels, leakage_guard=args.leakage_guard)
    summary = fetch(args.kind, args.segments, args.output, options)
    counts = ", ".join(f"{status}: {count}" for status, count in summary["by_status"].items() if count)
    print(f"{summary['segments']} segments, {summary['available']:.1%} available ({counts}); "
          f"{summary['clips']} clips for `run --input {args.output}`")
    return 0


def _build(args: argparse.Namespace) -> int:
    from fusion_datasets.builders import BUILDERS, build
    from fusion_datasets.config import parse_override

    options = dict(map(parse_override, args.set))
    options.update({item.name: getattr(args, item.name) for item in BUILDERS[args.name].options()
                    if hasattr(args, item.name)})  # the options given (the others are not set at all)
    print(build(args.name, args.data_dir, args.output, allow_empty=args.allow_empty, **options).summary())
    return 0


def _add_builders(build: argparse.ArgumentParser) -> None:
    """One sub-command per builder, whose help is the builder's: its layout, files and options."""
    from fusion_datasets.builders import BUILDERS
    from fusion_datasets.builders.usage import description, summary

    names = build.add_subparsers(dest="name", required=True, metavar="NAME", title="builders (NAME --help: its "
                                 "folder layout and options)")
    for name, builder in sorted(BUILDERS.items()):
        parser = names.add_parser(name, help=summary(builder), description=description(builder))
        parser.add_argument("--data-dir", required=True, type=Path, metavar="DIR", help="the downloaded files")
        parser.add_argument("--output", required=True, type=Path, metavar="OUT",
                            help="the output folder (Parquet in the Hub layout, stats.json)")
        for field in builder.options():
            _add_builder_option(parser, field)
        parser.add_argument("--allow-empty", action="store_true", help="write the dataset even when no row is found")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="an option above by its field name (data_file=FILE)")


def _add_builder_option(parser: argparse.ArgumentParser, field: dataclasses.Field) -> None:
    """A builder config field as an option: ``--no-NAME`` if true by default, repeated if a list; not set
    in the namespace unless given, so that the builder's default holds."""
    flag, text = field.name.replace("_", "-"), field.metadata["help"]
    common = {"dest": field.name, "default": argparse.SUPPRESS}
    if field.default is True:
        parser.add_argument(f"--no-{flag}", action="store_false", **common,
                            help=f"by default, {text}; with this flag, {field.metadata['off']}")
    else:
        action = "append" if isinstance(field.default, tuple) else "store"
        parser.add_argument(f"--{flag}", action=action, metavar=field.metadata["metavar"], help=text, **common)


def _calibrate_filter(args: argparse.Namespace) -> int:
    from fusion_datasets.clap import calibrate_filter

    result = calibrate_filter(
        args.judgements, args.model, args.output, audio_root=args.audio_root, score_cutoff=args.score_cutoff,
        higher_is_better=args.higher_is_better, beta=args.beta, kind=args.kind, text_encoder=args.text_encoder,
        device=args.device, batch_size=args.batch_size,
    )
    print(result.summary())
    return 0


def _review(args: argparse.Namespace) -> int:
    from fusion_datasets.review import export_review, open_review, start_server

    session = open_review(args.output, sample=args.sample, seed=args.seed, reviewer=args.reviewer)
    if args.export:
        print(export_review(session, args.export))
        return 0
    server = start_server(session, args.port)
    judged = session.summary()["judged"]
    print(f"reviewing {len(session.clips)} captions ({judged} judged) at {server.url} ; judgements go to "
          f"{session.store.path}; Ctrl-C stops", flush=True)
    try:
        server.serve_forever()  # until Ctrl-C; each judgement was saved as it was made
    finally:
        server.server_close()
    return 0


def _eval_retrieval(args: argparse.Namespace) -> int:
    from fusion_datasets.eval import run_retrieval_eval

    run_retrieval_eval(
        args.model, args.dataset, args.output, split=args.split, config=args.config, benchmark=args.benchmark,
        kind=args.kind, text_encoder=args.text_encoder, device=args.device, batch_size=args.batch_size,
        audio_column=args.audio_column, captions_column=args.captions_column, n_resamples=args.n_resamples,
        seed=args.seed, map_protocol=args.map_protocol,
    )
    print(Path(args.output) / "report.md")
    return 0


def _eval_predict(args: argparse.Namespace) -> int:
    import json

    from fusion_datasets.chat.backends import BackendConfig
    from fusion_datasets.config import from_mapping
    from fusion_datasets.eval.predict import run_predict

    backend = None
    if args.backend == "server":
        backend = from_mapping(BackendConfig, {"kind": "server", "model": args.model, "base_urls": args.base_url,
                                               "max_concurrency": args.max_concurrency,
                                               "token_env": args.token_env}, "--backend server")
    counts = run_predict(
        args.model, args.benchmark, args.output, split=args.split, config=args.config,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, prompt=args.prompt,
        device=args.device, dtype=args.dtype, backend=backend, max_seconds=args.max_seconds,
        caption_instruction=args.caption_instruction,
    )
    print(json.dumps(counts))
    return 0


def _eval_qa(args: argparse.Namespace) -> int:
    from fusion_datasets.chat.backends import BackendConfig
    from fusion_datasets.config import from_mapping
    from fusion_datasets.eval.qa import run_qa_eval

    judge = None
    if args.judge_model:
        where = {"server": {"base_urls": args.judge_url, "token_env": args.judge_token_env},
                 "transformers": {"device": args.device, "batch_size": args.judge_batch_size}}
        options = {"kind": args.judge_kind, "model": args.judge_model, **where[args.judge_kind]}
        judge = from_mapping(BackendConfig, options, "judge")
    run_qa_eval(
        args.predictions, args.benchmark, args.output, model=args.model, kind=args.kind, judge=judge,
        judge_parse=args.judge_parse, chat_orders=args.chat_orders, max_reasks=args.max_reasks,
        judge_max_new_tokens=args.judge_max_new_tokens, align_seed=args.align_seed,
        align_temperature=args.align_temperature, split=args.split,
        config=args.config, model_index=args.model_index,
    )
    print(Path(args.output) / "report.md")
    return 0


def _eval_classification(args: argparse.Namespace) -> int:
    from fusion_datasets.eval.classification import run_classification_eval

    run_classification_eval(
        args.predictions, args.benchmark, args.output, model=args.model, text_encoder=args.text_encoder,
        template=args.template, text_form=args.text_form, device=args.device, split=args.split, config=args.config,
        model_index=args.model_index,
    )
    print(Path(args.output) / "report.md")
    return 0


def _eval_captions(args: argparse.Namespace) -> int:
    from fusion_datasets.eval.captions import CaptionOptions, run_captions_eval

    options = CaptionOptions(java=args.java, corenlp=args.corenlp, sentence_model=args.fense_sentence_model,
                             error_detector=args.fense_checker, error_detector_base=args.fense_checker_base,
                             device=args.device, batch_size=args.batch_size, skip=frozenset(args.skip))
    run_captions_eval(
        args.predictions, args.benchmark, args.output, model=args.model, options=options,
        clap_model=args.clap_model, clap_kind=args.clap_kind, n_resamples=args.n_resamples, seed=args.seed,
        split=args.split, config=args.config, model_index=args.model_index,
    )
    print(Path(args.output) / "report.md")
    return 0


def _add_benchmark_options(parser: argparse.ArgumentParser, predictions: bool = True) -> None:
    parser.add_argument("--benchmark", required=True, help="a `fusion-datasets build` folder or a Hub id")
    parser.add_argument("--split", default="test", help="the benchmark's split")
    parser.add_argument("--config", help="the benchmark's config name")
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: a GPU if there is one, else the CPU)")
    if predictions:
        parser.add_argument("--predictions", required=True, type=Path,
                            help="eval predict's JSONL, or the FusionAudio format (output: the answer)")
        parser.add_argument("--output", required=True, type=Path, help="the report folder")
        parser.add_argument("--model-name", "--model", dest="model",
                            help="the model's name in the report (default: the model eval predict recorded, else "
                                 "the predictions file's name)")
        parser.add_argument("--model-index", type=Path, help="also write the results as model-index YAML")


def _train_clap(args: argparse.Namespace) -> int:
    from fusion_datasets.train import load_train_config, train_clap

    config = load_train_config(args.preset, args.set, model=args.model, train=args.train, eval=args.eval,
                               output=str(args.output), push_to_hub=args.push_to_hub)
    result = train_clap(config)
    print(Path(args.output) / ("report.md" if result.best else "train_stats.json"))
    return 0


def _train_audio_lm(args: argparse.Namespace) -> int:
    from fusion_datasets.train.audio_lm import load_config, train_audio_lm

    config = load_config(args.model_or_config, args.set, data=args.data, output=args.output and str(args.output),
                         preset=args.preset, merge=args.merge or None, eval=args.eval)
    report = train_audio_lm(config)
    print(json.dumps({key: report[key] for key in ("rows", "skipped", "clips_cut", "steps", "final_loss",
                                                   "eval_loss", "eval")}))
    print(Path(config.output) / "README.md")
    return 0


def _add_clap_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--model", required=True, help="a CLAP Hub id, folder, or LAION-CLAP .pt file")
    parser.add_argument("--kind", choices=["auto", "transformers", "laion"], default="auto",
                        help="the CLAP implementation; auto: LAION-CLAP for a .pt file, else transformers")
    parser.add_argument("--text-encoder", default="roberta-base", help="LAION-CLAP only: RoBERTa id or path")
    parser.add_argument("--device", help="cuda, cuda:1, cpu (default: a GPU if there is one, else the CPU)")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="clips (or captions) per model call")


def _tiny_model_name(name: str) -> str:
    """``tiny-zoo --only``'s check, run only when that command is parsed (the test kit stays unimported)."""
    from fusion_datasets.testing.zoo import TINY_MODEL_NAMES

    if name not in TINY_MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {', '.join(TINY_MODEL_NAMES)})")
    return name


def _clip_count(text: str) -> int:
    """``--limit``'s check: a whole number of clips, 1 or more."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of clips, 1 or more, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fusion-datasets", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    run = commands.add_parser("run", help="caption clips: experts, fusion, CLAP filter, QA (a rerun resumes)")
    run.add_argument("config", help="a YAML file or a bundled config: tiny (offline test models), small, paper")
    run.add_argument("--input", help="a folder of audio/video files, Parquet, a saved dataset or a Hub id")
    run.add_argument("--output", help="the output folder (Hub dataset layout)")
    run.add_argument("--limit", type=_clip_count, metavar="N",
                     help="take only the first N clips of the input, for a trial run (input.limit)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    run.add_argument("--num-shards", type=int, metavar="N", help="split the new clips into N parts")
    run.add_argument("--retry-errors", action="store_true", help="rerun only the rows that carry errors")
    run.add_argument("--embed-audio", action="store_true", help="store the audio in the Parquet files")
    run.add_argument("--export", choices=["fusionaudio"], help="also write the FusionAudio JSON release format")
    run.add_argument("--audio-root", help="--export: write audio_id relative to this folder (default: absolute)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and compute estimates, run nothing")
    run.add_argument("--engine", choices=["local", "ray"], help="local (default) or Ray Data (extra `ray`)")
    run.add_argument("--ray-address", help="the Ray cluster to join (auto, ray://HOST:PORT); default: a local Ray")
    run.add_argument("--throughput", type=Path, help="--dry-run: clips/s per stage from benchmarks/gpu/run.sh or "
                     "benchmarks/experts.py --save (used for the stages whose model the file names)")
    run.add_argument("--clips", type=_clip_count, metavar="N",
                     help="--dry-run: the compute plan for N clips, without reading the input or the output")
    run.add_argument("--gpu", help="--dry-run: the GPU model to price, e.g. H100 (the GPU kit's bundled figures)")
    run.add_argument("--gpus", type=_clip_count, default=8, metavar="K", help="--dry-run: the total on K GPUs too")
    run.set_defaults(handler=_run)

    card = commands.add_parser("card", help="re-render an output folder's dataset card (README.md, its plot)")
    card.add_argument("directory", type=Path, help="the output folder of `fusion-datasets run`")
    card.set_defaults(handler=_card)

    push = commands.add_parser("push", help="upload a run's output folder to a Hub dataset (resumable)")
    push.add_argument("directory", type=Path, help="the output folder of `fusion-datasets run`")
    push.add_argument("repo_id", help="the dataset repository, ORG/NAME (created if it does not exist)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--allow-partial", "--allow-incomplete", dest="allow_incomplete", action="store_true",
                      help="push a folder mid-run all the same: its committed state, which its card says is partial")
    push.add_argument("--publish-audio", choices=["auto", "embed", "source", "none"],
                      help="what the Hub gets of the audio: embed (playable), source (public source ids and times), "
                           "none; auto refuses rows that name files of this machine (default: output.publish_audio)")
    push.set_defaults(handler=_push)

    export = commands.add_parser("export", help="write a run's captions in a trainer's format (resumable)")
    export.add_argument("directory", type=Path, help="the output folder of `fusion-datasets run`")
    export.add_argument("--format", required=True, choices=["webdataset", "wavcaps", "messages", "lhotse",
                                                            "fusionaudio"],
                        help="webdataset: LAION-CLAP's tar shards; wavcaps: WavCaps' JSON; messages: ms-swift / "
                             "LLaMA-Factory SFT JSONL; lhotse: manifests; fusionaudio: FusionAudio's JSON")
    export.add_argument("--output", required=True, type=Path, help="the export's folder (a rerun resumes)")
    export.add_argument("--split", default="train", help="webdataset: the shards' split folder")
    export.add_argument("--shard-samples", type=int, default=1000, help="webdataset: samples per shard, at most")
    export.add_argument("--shard-bytes", type=int, default=1_000_000_000, help="webdataset: bytes per shard, about")
    export.add_argument("--with-qa", action="store_true",
                        help="webdataset: each clip's text is its caption and its QA pairs (LAION-CLAP picks one)")
    export.add_argument("--audio-root", help="wavcaps, messages, fusionaudio: audio paths relative to this folder "
                                             "(default: absolute)")
    export.set_defaults(handler=_export)

    fetch = commands.add_parser(
        "fetch", help="fetch the media of AudioSet, AudioCaps or VGGSound segments (yt-dlp + ffmpeg, resumable)",
        description="Fetch each segment of the CSVs from YouTube with yt-dlp (extra `fetch`), cut it with ffmpeg "
                    "to <ytid>_<start>.flac (and .mp4 with --video), and record what became of every segment in "
                    "fetch_manifest.parquet (ok, unavailable, private, removed, geo-blocked, too-short, "
                    "failed-to-cut, failed-other). The folder is an input of `run` (the clips with their labels "
                    "as human audio_tags). A rerun fetches what is missing or failed for a passing reason. "
                    "Fetch media only as the platform's terms allow.")
    fetch.add_argument("kind", choices=["audioset", "audiocaps", "vggsound"],
                       help="the CSV's layout: audioset (YTID, start_seconds, end_seconds, positive_labels; no "
                            "header), audiocaps (a header with youtube_id, start_time), vggsound (youtube_id, "
                            "start_seconds, label, split; no header)")
    fetch.add_argument("--segments", action="append", required=True, metavar="CSV",
                       help="a segment list (repeatable)")
    fetch.add_argument("--output", required=True, type=Path, help="the clips' folder (a rerun resumes)")
    fetch.add_argument("--video", action="store_true", help="also the video, as <ytid>_<start>.mp4")
    fetch.add_argument("--jobs", type=int, default=4, help="downloads at once")
    fetch.add_argument("--retry", action="append", default=[], metavar="STATUS",
                       help="also fetch again the segments of this status (unavailable, private, ...; repeatable); "
                            "failed-to-cut and failed-other always are")
    fetch.add_argument("--rate-limit", metavar="RATE", help="bytes per second per download (500K, 2M)")
    fetch.add_argument("--cookies", metavar="FILE", help="a Netscape cookie file for yt-dlp (never recorded)")
    fetch.add_argument("--proxy", metavar="URL", help="a proxy for yt-dlp (never recorded)")
    fetch.add_argument("--url-template", default="https://www.youtube.com/watch?v={id}",
                       help="the URL of a segment's video, {id} the YouTube id (a mirror, a local server)")
    fetch.add_argument("--format", help="yt-dlp's format selector (default: the audio stream alone; with "
                                        "--video, video up to 480p and audio)")
    fetch.add_argument("--socket-timeout", type=float, default=20.0, help="seconds without data before a "
                                                                          "download is given up")
    fetch.add_argument("--retries", type=int, default=3, help="further tries of a download that failed for a "
                                                              "passing reason (HTTP 429, 5xx, a stall)")
    fetch.add_argument("--backoff", type=float, default=2.0,
                       help="seconds: the scale of the wait before a retry, doubling each time, jittered")
    fetch.add_argument("--min-fraction", type=float, default=0.9,
                       help="a clip holding less of its segment than this fraction is too-short")
    fetch.add_argument("--labels", metavar="FILE", help="AudioSet's class_labels_indices.csv (default: bundled)")
    fetch.add_argument("--no-leakage-guard", dest="leakage_guard", action="store_false",
                       help="keep the clips of benchmarks built on this machine in the run input")
    fetch.set_defaults(handler=_fetch)

    build = commands.add_parser(
        "build", help="turn a downloaded source or benchmark into a dataset", later=_add_builders,
        description="Turn files you have downloaded into a dataset (nothing is downloaded): a source of clips "
                    "for `run`, or a benchmark for `eval`. `build NAME --help` says the folder layout NAME "
                    "expects, its files and its options.")
    build.set_defaults(handler=_build)

    calibrate = commands.add_parser("calibrate-filter", help="pick the CLAP filter threshold from human ratings")
    calibrate.add_argument("judgements", nargs="+",
                           help="CSV, JSON(L) or dataset: id, caption, and a good/bad label or a score; "
                                "several (one per reviewer) are pooled")
    calibrate.add_argument("--output", required=True, type=Path, help="the folder of the calibration's report")
    calibrate.add_argument("--audio-root", type=Path, help="folder the judgements' audio paths or ids resolve in")
    calibrate.add_argument("--score-cutoff", type=float, help="a score at most this is a good caption")
    calibrate.add_argument("--higher-is-better", action="store_true", help="the score rates quality, not hallucination")
    calibrate.add_argument("--beta", type=float, default=1.05, help="F-beta's beta (the paper: 1.05)")
    _add_clap_options(calibrate, batch_size=16)
    calibrate.set_defaults(handler=_calibrate_filter)

    review = commands.add_parser("review", help="listen to a run's clips beside their captions and judge them")
    review.add_argument("output", type=Path, help="the output folder of `fusion-datasets run`")
    review.add_argument("--sample", type=int, default=50, metavar="N", help="captions to review")
    review.add_argument("--seed", type=int, default=0, help="the sample's seed: the same seed, the same captions")
    review.add_argument("--port", type=int, default=8765, help="the port on 127.0.0.1 (0: a free one)")
    review.add_argument("--reviewer", default="reviewer", help="whose judgements: OUTPUT/review/NAME.jsonl")
    review.add_argument("--export", type=Path, metavar="DIR", help="write a read-only page to DIR, serve nothing")
    review.set_defaults(handler=_review)

    evaluation = commands.add_parser("eval", help="evaluate a model on benchmarks").add_subparsers(
        dest="task", required=True, metavar="TASK")
    retrieval = evaluation.add_parser("retrieval", help="CLAP text-to-audio and audio-to-text retrieval")
    retrieval.add_argument("--dataset", required=True, help="a folder or Hub id: clips with a list of captions")
    retrieval.add_argument("--split", default="test", help="the dataset's split")
    retrieval.add_argument("--config", help="the dataset's config name")
    retrieval.add_argument("--benchmark", help="the benchmark's name in the report (default: the dataset's)")
    retrieval.add_argument("--output", required=True, type=Path, help="the report folder")
    retrieval.add_argument("--audio-column", default="audio", help="the dataset's audio column")
    retrieval.add_argument("--captions-column", default="captions", help="its column of captions (a list)")
    retrieval.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    retrieval.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    retrieval.add_argument("--map-protocol", choices=["sorted", "unsorted"], default="sorted",
                           help="A2T mAP@10: an audio's caption ranks sorted (WavCaps, Mei et al., FusionAudio) "
                                "or in caption order (LAION-CLAP's code; reads higher)")
    _add_clap_options(retrieval, batch_size=32)
    retrieval.set_defaults(handler=_eval_retrieval)

    predict = evaluation.add_parser("predict", help="an audio LM's answers to a benchmark (resumable JSONL)")
    from fusion_datasets.eval.predict import CAPTION_INSTRUCTION
    from fusion_datasets.experts.audio_lm import FAMILIES

    families = "; ".join(f"{model_type}: {family.example}" for model_type, family in FAMILIES.items())
    predict.add_argument("--model", required=True,
                         help=f"an audio LM's Hub id or folder, of a family run in process ({families}; README: "
                              "Audio language models), or the served model's name with --backend server")
    predict.add_argument("--output", required=True, type=Path, help="the predictions JSONL (a rerun resumes)")
    predict.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    predict.add_argument("--max-new-tokens", type=int, default=256, help="the longest answer, in tokens")
    predict.add_argument("--prompt", default="{instruction}", help="template around each row's instruction")
    predict.add_argument("--caption-instruction", default=CAPTION_INSTRUCTION,
                         help="the instruction of a captioning benchmark's rows (AudioCaps, Clotho)")
    predict.add_argument("--dtype", default="auto", help="float32, float16, bfloat16; auto: bfloat16 on a GPU, "
                                                          "float32 on the CPU")
    predict.add_argument("--max-seconds", type=float, default=30.0,
                         help="each clip is cut to this (and to what its model's family takes: README)")
    predict.add_argument("--backend", choices=["transformers", "server"], default="transformers",
                         help="server: --model is the served model's name at --base-url (OpenAI-compatible)")
    predict.add_argument("--base-url", action="append", default=[], help="the model server's URL (repeatable)")
    predict.add_argument("--token-env", metavar="VARIABLE",
                         help="the environment variable whose token the server gets (HF_TOKEN for an Inference "
                              "Endpoint); none is sent without it")
    predict.add_argument("--max-concurrency", type=int, default=16, help="requests in flight to the server")
    _add_benchmark_options(predict, predictions=False)
    predict.set_defaults(handler=_eval_predict)
    qa = evaluation.add_parser("qa", help="score answers to a QA benchmark (exact match, choice, LLM judge)")
    _add_benchmark_options(qa)
    qa.add_argument("--kind", choices=["closed", "choice", "audiobench", "air-bench-chat"],
                    help="how to score (default: from the benchmark's builder)")
    qa.add_argument("--judge-model", help="the judge LLM for open-ended answers: Hub id, folder, served name")
    qa.add_argument("--judge-kind", choices=["transformers", "server"], default="transformers",
                    help="run the judge in process, or ask it at --judge-url")
    qa.add_argument("--judge-url", action="append", default=[], help="the judge server's URL (repeatable)")
    qa.add_argument("--judge-token-env", metavar="VARIABLE",
                    help="the environment variable whose token the judge server gets; none is sent without it")
    qa.add_argument("--judge-batch-size", type=int, default=8, help="in-process judge: prompts per batch")
    qa.add_argument("--judge-parse", choices=["fusionaudio", "last-token", "rating-line"], default="fusionaudio",
                    help="AudioBench verdicts: the last token, brackets stripped, 0 if not a rating from 0 to 5 "
                         "(FusionAudio's), the last token as any number, else 0 (AudioBench's), or the last "
                         "'Rating: N', re-asked, left out if still missing")
    qa.add_argument("--chat-orders", choices=["both", "reference-first"], default="both",
                    help="AIR-Bench chat: judge each answer in both orders (averaged) or in AIR-Bench's only")
    qa.add_argument("--align-seed", type=int, default=0,
                    help="AIR-Bench Foundation with a judge: the seed of its alignment of answers to options")
    qa.add_argument("--align-temperature", type=float,
                    help="AIR-Bench Foundation with a judge: one temperature for the alignment, named in the "
                         "protocol (default: AIR-Bench's, 1 or 2 for half the questions)")
    qa.add_argument("--max-reasks", type=int, default=2, help="re-asks of a verdict that does not parse")
    qa.add_argument("--judge-max-new-tokens", type=int, default=256, help="more for a reasoning judge")
    qa.set_defaults(handler=_eval_qa)
    captions = evaluation.add_parser("captions", help="captioning metrics (BLEU, METEOR, ROUGE-L, CIDEr-D, SPICE, "
                                     "SPIDEr, FENSE, SPIDEr-FL) against a benchmark's reference captions")
    _add_benchmark_options(captions)
    captions.add_argument("--java", default="java", help="the Java runtime for the PTB tokenizer, METEOR and SPICE")
    captions.add_argument("--corenlp", metavar="DIR",
                          help="SPICE: the folder holding stanford-corenlp-3.6.0.jar and its -models.jar "
                               "(default: pycocoevalcap's spice/lib)")
    captions.add_argument("--fense-sentence-model", default="sentence-transformers/paraphrase-TinyBERT-L6-v2",
                          help="FENSE's sentence model: a sentence-transformers Hub id or folder")
    captions.add_argument("--fense-checker", metavar="CKPT",
                          help="FENSE's error detector (echecker_clotho_audiocaps_base.ckpt): a file or "
                               "ORG/NAME/FILE on the Hub; FENSE and SPIDEr-FL need it")
    captions.add_argument("--fense-checker-base", metavar="MODEL",
                          help="the BERT the checker names (bert-base-uncased): a folder to run offline")
    captions.add_argument("--clap-model", help="also CLAP-sim: a CLAP Hub id, folder or LAION-CLAP .pt")
    captions.add_argument("--clap-kind", choices=["auto", "transformers", "laion"], default="auto",
                          help="the CLAP implementation; auto: LAION-CLAP for a .pt file, else transformers")
    captions.add_argument("--skip", action="append", default=[], choices=["meteor", "spice", "fense", "clap"],
                          help="a metric not to compute (repeatable)")
    captions.add_argument("--batch-size", type=int, default=32, help="captions (or clips) per model call")
    captions.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    captions.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    captions.set_defaults(handler=_eval_captions)
    classification = evaluation.add_parser("classification", help="zero-shot classification from captions")
    _add_benchmark_options(classification)
    classification.add_argument("--text-encoder", default="sentence-transformers/all-MiniLM-L6-v2",
                                help="a sentence-transformers or CLAP Hub id or folder")
    classification.add_argument("--template", default="sound of {label}", help="the text embedded per label")
    classification.add_argument("--text-form", choices=["caption", "fusionaudio"], default="caption",
                                help="how a caption is embedded: as it is, or FusionAudio's \"sound of \" + the "
                                     "caption in lower case")
    classification.set_defaults(handler=_eval_classification)

    train = commands.add_parser("train-clap", help="fine-tune a CLAP model on caption datasets (resumable)")
    train.add_argument("--model", required=True, help="a transformers CLAP Hub id or folder to start from")
    train.add_argument("--train", required=True, action="append", metavar="DATASET[:CONFIG]",
                       help="a run output, saved dataset or Hub id with caption(s) and audio, or WebDataset "
                            "shards (a folder or hf:// path with train/*.tar and sizes.json) (repeatable)")
    train.add_argument("--eval", required=True, help="a retrieval dataset (audio + captions) to evaluate on")
    train.add_argument("--output", required=True, type=Path, help="checkpoints, best model, eval results")
    train.add_argument("--preset", choices=["pretrain", "finetune"], default="pretrain",
                       help="pretrain: lr 5e-5, 15 epochs; finetune: lr 1e-5, 20 epochs (batch 196)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    train.add_argument("--push-to-hub", metavar="REPO", help="upload the best checkpoint with a model card")
    train.set_defaults(handler=_train_clap)

    lm = commands.add_parser(
        "train-audio-lm", help="instruction-tune an audio LM (LoRA) on captions and QA (resumable)",
        description="Fine-tune an audio language model (README: Audio language models) on a run's captions and QA "
                    "pairs, a Hub dataset in that layout or FusionAudio's release JSON, with a LoRA adapter. The "
                    "output folder loads in `eval predict --model DIR` and as the sound expert's model. Killed, the "
                    "same command resumes from the last checkpoint.")
    lm.add_argument("model_or_config", metavar="MODEL_OR_CONFIG",
                    help="the audio LM to start from (Hub id or folder), or a YAML file of the config's fields")
    lm.add_argument("--data", action="append", default=[], metavar="SOURCE[@WEIGHT]",
                    help="a run output, Hub dataset or FusionAudio JSON (repeatable); @0.5 takes half its rows")
    lm.add_argument("--output", type=Path, help="the adapter, checkpoints, card and report")
    lm.add_argument("--preset", choices=["default", "fusionaudio", "frozen-projector"],
                    help="default: LoRA on the language model, projector trained; fusionaudio: the release's recipe "
                         "(LoRA r8 on q,v, audio encoder and projector trained, prompt in the loss, lr 1e-4, "
                         "2 epochs); frozen-projector: LoRA alone (default: default)")
    lm.add_argument("--merge", action="store_true", help="also write the base with the adapter merged in (merged/)")
    lm.add_argument("--eval", action="append", default=[], metavar="BENCHMARK",
                    help="a QA benchmark (built folder or Hub id) to answer and score after training, for the card "
                         "(repeatable)")
    lm.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config field (lora_r, learning_rate, epochs, max_steps, train_on_inputs, ...)")
    lm.set_defaults(handler=_train_audio_lm)

    zoo = commands.add_parser("tiny-zoo", help="write the tiny random-weight models used by the `tiny` config")
    zoo.add_argument("directory", type=Path, help="the folder the models are written to")
    zoo.add_argument("--only", nargs="+", type=_tiny_model_name, metavar="NAME",
                     help="build only these models (default: all; see the tiny config)")
    zoo.add_argument("--overwrite", action="store_true", help="rebuild models that already exist")
    zoo.set_defaults(handler=_tiny_zoo)

    demo = commands.add_parser("demo", help="run the pipeline on bundled sample clips, on the CPU")
    demo.add_argument("--tiny-models", action="store_true", help="the offline tiny random-weight models (`tiny`)")
    demo.add_argument("--output", type=Path, default=Path("demo_output"), help="where the clips and dataset go")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command. A user's mistake prints one paragraph and exits 2 (``-v`` adds the traceback);
    Ctrl-C stops at once and exits 130, saying how to resume."""
    args = build_parser().parse_args(argv)
    if not args.verbose:  # the libraries' advice and weight-loading bars are for their developers
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from fusion_datasets.runtime import raise_if_interrupted, stop_on_interrupt

    stop_on_interrupt()
    try:
        code = args.handler(args)
        raise_if_interrupted()  # a Ctrl-C that a library swallowed still ends the command as interrupted
        return code
    except KeyboardInterrupt:
        _say("interrupted. Finished parts are kept: rerun the same command to resume.", args.verbose)
        return 130
    except (UserError, ValueError, OSError) as error:
        # a user's mistake (a path, an option, an input) or the system's refusal (a full disk, a permission)
        _say(f"error: {error}", args.verbose)
        return 2


def _say(message: str, verbose: bool) -> None:
    if verbose:
        import traceback

        traceback.print_exc()
    print(f"fusion-datasets: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
