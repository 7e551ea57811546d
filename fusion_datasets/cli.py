"""The ``fusion-datasets`` command. It parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fusion_datasets import __version__


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
    import json

    from fusion_datasets.pipeline.config import load_config
    from fusion_datasets.pipeline.runner import PipelineRunner

    overrides = list(args.set)
    if args.input:
        overrides.append(f"input.path={args.input}")
    if args.output:
        overrides.append(f"output.path={args.output}")
    stats = PipelineRunner(load_config(args.config, overrides), retry_errors=args.retry_errors).run()
    print(json.dumps(stats, indent=2))
    return 0


def _calibrate_filter(args: argparse.Namespace) -> int:
    from fusion_datasets.clap import calibrate_filter

    result = calibrate_filter(
        args.judgements, args.model, args.output, audio_root=args.audio_root, score_cutoff=args.score_cutoff,
        higher_is_better=args.higher_is_better, beta=args.beta, kind=args.kind, text_encoder=args.text_encoder,
        device=args.device, batch_size=args.batch_size,
    )
    print(result.summary())
    return 0


def _eval_retrieval(args: argparse.Namespace) -> int:
    from fusion_datasets.eval import run_retrieval_eval

    run_retrieval_eval(
        args.model, args.dataset, args.output, split=args.split, config=args.config, benchmark=args.benchmark,
        kind=args.kind, text_encoder=args.text_encoder, device=args.device, batch_size=args.batch_size,
        audio_column=args.audio_column, captions_column=args.captions_column, n_resamples=args.n_resamples,
        seed=args.seed,
    )
    print(Path(args.output) / "report.md")
    return 0


def _add_clap_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--model", required=True, help="a CLAP Hub id, folder, or LAION-CLAP .pt file")
    parser.add_argument("--kind", choices=["auto", "transformers", "laion"], default="auto")
    parser.add_argument("--text-encoder", default="roberta-base", help="LAION-CLAP only: RoBERTa id or path")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=batch_size)


def build_parser() -> argparse.ArgumentParser:
    from fusion_datasets.testing.zoo import TINY_MODEL_NAMES

    parser = argparse.ArgumentParser(prog="fusion-datasets", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline on clips; rerunning resumes")
    run.add_argument("config", help="a YAML file or a bundled config: tiny, small, paper")
    run.add_argument("--input", help="a folder of audio/video files, Parquet, a saved dataset or a Hub id")
    run.add_argument("--output", help="the output folder (Hub dataset layout)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    run.add_argument("--retry-errors", action="store_true", help="rerun only the rows that carry errors")
    run.set_defaults(handler=_run)

    calibrate = commands.add_parser("calibrate-filter", help="pick the CLAP filter threshold from human ratings")
    calibrate.add_argument("judgements", help="CSV or dataset: id, caption, and a good/bad label or a score")
    calibrate.add_argument("--output", required=True, type=Path)
    calibrate.add_argument("--audio-root", type=Path, help="folder the judgements' audio paths or ids resolve in")
    calibrate.add_argument("--score-cutoff", type=float, help="a score at most this is a good caption")
    calibrate.add_argument("--higher-is-better", action="store_true", help="the score rates quality, not hallucination")
    calibrate.add_argument("--beta", type=float, default=1.05, help="F-beta's beta (the paper: 1.05)")
    _add_clap_options(calibrate, batch_size=16)
    calibrate.set_defaults(handler=_calibrate_filter)

    evaluation = commands.add_parser("eval", help="evaluate a model on benchmarks").add_subparsers(
        dest="task", required=True, metavar="TASK")
    retrieval = evaluation.add_parser("retrieval", help="CLAP text-to-audio and audio-to-text retrieval")
    retrieval.add_argument("--dataset", required=True, help="a folder or Hub id: clips with a list of captions")
    retrieval.add_argument("--split", default="test")
    retrieval.add_argument("--config", help="the dataset's config name")
    retrieval.add_argument("--benchmark", help="the benchmark's name in the report (default: the dataset's)")
    retrieval.add_argument("--output", required=True, type=Path)
    retrieval.add_argument("--audio-column", default="audio")
    retrieval.add_argument("--captions-column", default="captions")
    retrieval.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    retrieval.add_argument("--seed", type=int, default=0)
    _add_clap_options(retrieval, batch_size=32)
    retrieval.set_defaults(handler=_eval_retrieval)

    zoo = commands.add_parser("tiny-zoo", help="write the tiny random-weight models used by the `tiny` config")
    zoo.add_argument("directory", type=Path)
    zoo.add_argument("--only", nargs="+", choices=TINY_MODEL_NAMES, help="build only these models")
    zoo.add_argument("--overwrite", action="store_true", help="rebuild models that already exist")
    zoo.set_defaults(handler=_tiny_zoo)

    demo = commands.add_parser("demo", help="run the pipeline on bundled sample clips, on the CPU")
    demo.add_argument("--tiny-models", action="store_true", help="the offline tiny random-weight models (`tiny`)")
    demo.add_argument("--output", type=Path, default=Path("demo_output"))
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
