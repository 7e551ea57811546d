"""The ``fusion-datasets`` command. It parses arguments and calls the library, nothing else."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fusion_datasets import __version__
from fusion_datasets.errors import UserError


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

    overrides = list(args.set)
    if args.input:
        overrides.append(f"input.path={args.input}")
    if args.output:
        overrides.append(f"output.path={args.output}")
    if args.num_shards is not None:
        overrides.append(f"output.num_shards={args.num_shards}")
    if args.embed_audio:
        overrides.append("output.embed_audio=true")
    if args.export:
        overrides.append(f"output.export={args.export}")
    if args.audio_root:
        overrides.append(f"output.export_audio_root={args.audio_root}")
    if args.engine:
        overrides.append(f"engine={args.engine}")
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    config = load_config(args.config, overrides)
    if not args.dry_run and uses_tiny_zoo(args.config):
        _build_tiny_zoo()
    if args.dry_run:
        from fusion_datasets.pipeline.dryrun import describe_plan, load_throughput

        print(describe_plan(config, load_throughput(args.throughput)))
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
    from fusion_datasets.hub.card import render_card
    from fusion_datasets.pipeline.config import load_run_config

    print(render_card(args.directory, load_run_config(args.directory)))
    return 0


def _push(args: argparse.Namespace) -> int:
    from fusion_datasets.hub.push import push_folder

    url = push_folder(args.directory, args.repo_id, private=args.private, allow_incomplete=args.allow_incomplete)
    print(url)
    return 0


def _build(args: argparse.Namespace) -> int:
    from fusion_datasets.builders import build
    from fusion_datasets.config import parse_override

    options = dict(map(parse_override, args.set))
    given = {"data_file": args.data_file, "audio_root": args.audio_root, "exclude": args.exclude,
             "split": args.split, "encoding": args.encoding, "clip_list": args.clip_list}
    options.update({key: value for key, value in given.items() if value})
    if args.no_leakage_guard:
        options["leakage_guard"] = False
    print(build(args.name, args.data_dir, args.output, allow_empty=args.allow_empty, **options).summary())
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

    from fusion_datasets.config import from_mapping
    from fusion_datasets.eval.predict import run_predict
    from fusion_datasets.llm.backends import BackendConfig

    backend = None
    if args.backend == "server":
        backend = from_mapping(BackendConfig, {"kind": "server", "model": args.model, "base_urls": args.base_url,
                                               "max_concurrency": args.max_concurrency}, "--backend server")
    counts = run_predict(
        args.model, args.benchmark, args.output, split=args.split, config=args.config,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, prompt=args.prompt,
        device=args.device, dtype=args.dtype, backend=backend, max_seconds=args.max_seconds,
    )
    print(json.dumps(counts))
    return 0


def _eval_qa(args: argparse.Namespace) -> int:
    from fusion_datasets.config import from_mapping
    from fusion_datasets.eval.qa import run_qa_eval
    from fusion_datasets.llm.backends import BackendConfig

    judge = None
    if args.judge_model:
        where = {"server": {"base_urls": args.judge_url},
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
        template=args.template, device=args.device, split=args.split, config=args.config,
        model_index=args.model_index,
    )
    print(Path(args.output) / "report.md")
    return 0


def _add_benchmark_options(parser: argparse.ArgumentParser, predictions: bool = True) -> None:
    parser.add_argument("--benchmark", required=True, help="a `fusion-datasets build` folder or a Hub id")
    parser.add_argument("--split", default="test")
    parser.add_argument("--config", help="the benchmark's config name")
    parser.add_argument("--device", default=None)
    if predictions:
        parser.add_argument("--predictions", required=True, type=Path,
                            help="eval predict's JSONL, or the FusionAudio format (output: the answer)")
        parser.add_argument("--output", required=True, type=Path, help="the report folder")
        parser.add_argument("--model", help="the model's name in the report (default: the file's name)")
        parser.add_argument("--model-index", type=Path, help="also write the results as model-index YAML")


def _train_clap(args: argparse.Namespace) -> int:
    from fusion_datasets.train import load_train_config, train_clap

    config = load_train_config(args.preset, args.set, model=args.model, train=args.train, eval=args.eval,
                               output=str(args.output), push_to_hub=args.push_to_hub)
    result = train_clap(config)
    print(Path(args.output) / ("report.md" if result.best else "train_stats.json"))
    return 0


def _add_clap_options(parser: argparse.ArgumentParser, batch_size: int) -> None:
    parser.add_argument("--model", required=True, help="a CLAP Hub id, folder, or LAION-CLAP .pt file")
    parser.add_argument("--kind", choices=["auto", "transformers", "laion"], default="auto")
    parser.add_argument("--text-encoder", default="roberta-base", help="LAION-CLAP only: RoBERTa id or path")
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=batch_size)


def _tiny_model_name(name: str) -> str:
    """``tiny-zoo --only``'s check, run only when that command is parsed (the test kit stays unimported)."""
    from fusion_datasets.testing.zoo import TINY_MODEL_NAMES

    if name not in TINY_MODEL_NAMES:
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {', '.join(TINY_MODEL_NAMES)})")
    return name


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-datasets", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the pipeline on clips; rerunning resumes")
    run.add_argument("config", help="a YAML file or a bundled config: tiny, small, paper")
    run.add_argument("--input", help="a folder of audio/video files, Parquet, a saved dataset or a Hub id")
    run.add_argument("--output", help="the output folder (Hub dataset layout)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    run.add_argument("--num-shards", type=int, metavar="N", help="split the new clips into N parts")
    run.add_argument("--retry-errors", action="store_true", help="rerun only the rows that carry errors")
    run.add_argument("--embed-audio", action="store_true", help="store the audio in the Parquet files")
    run.add_argument("--export", choices=["fusionaudio"], help="also write the FusionAudio JSON release format")
    run.add_argument("--audio-root", help="--export: write audio_id relative to this folder (default: absolute)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and compute estimates, run nothing")
    run.add_argument("--engine", choices=["local", "ray"], help="local (default) or Ray Data (extra `ray`)")
    run.add_argument("--ray-address", help="the Ray cluster to join (auto, ray://HOST:PORT); default: a local Ray")
    run.add_argument("--throughput", type=Path, help="clips/s per stage from benchmarks/experts.py --save")
    run.set_defaults(handler=_run)

    card = commands.add_parser("card", help="re-render an output folder's dataset card (README.md, its plot)")
    card.add_argument("directory", type=Path, help="the output folder of `fusion-datasets run`")
    card.set_defaults(handler=_card)

    push = commands.add_parser("push", help="upload a run's output folder to a Hub dataset (resumable)")
    push.add_argument("directory", type=Path, help="the output folder of `fusion-datasets run`")
    push.add_argument("repo_id", help="the dataset repository, ORG/NAME (created if it does not exist)")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--allow-incomplete", action="store_true", help="push a folder mid-run all the same")
    push.set_defaults(handler=_push)

    build = commands.add_parser("build", help="turn a downloaded source or benchmark into a dataset")
    build.add_argument("name", help="audioset, folder, audiocaps, esc50, ... (README: Builders)")
    build.add_argument("--data-dir", required=True, type=Path, help="the downloaded files")
    build.add_argument("--output", required=True, type=Path, help="the output folder (Parquet, Hub layout)")
    build.add_argument("--data-file", help="the metadata or FusionAudio JSON file, if not the default one")
    build.add_argument("--audio-root", help="the folder audio paths resolve in (default: --data-dir)")
    build.add_argument("--split", help="the split built (default: what --data-file's name says, else test)")
    build.add_argument("--encoding", help="the metadata's text encoding, when not UTF-8 (cp949, cp1252, ...)")
    build.add_argument("--clip-list", metavar="FILE",
                       help="retrieval: build only the clips listed, one id or file name per line")
    build.add_argument("--allow-empty", action="store_true", help="write the dataset even when no row is found")
    build.add_argument("--exclude", action="append", default=[], metavar="BENCHMARK_DIR",
                       help="a built benchmark whose clips are left out (sources; repeat for several)")
    build.add_argument("--no-leakage-guard", action="store_true",
                       help="sources: keep the clips of the test sets built on this machine")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a builder option")
    build.set_defaults(handler=_build)

    calibrate = commands.add_parser("calibrate-filter", help="pick the CLAP filter threshold from human ratings")
    calibrate.add_argument("judgements", nargs="+",
                           help="CSV, JSON(L) or dataset: id, caption, and a good/bad label or a score; "
                                "several (one per reviewer) are pooled")
    calibrate.add_argument("--output", required=True, type=Path)
    calibrate.add_argument("--audio-root", type=Path, help="folder the judgements' audio paths or ids resolve in")
    calibrate.add_argument("--score-cutoff", type=float, help="a score at most this is a good caption")
    calibrate.add_argument("--higher-is-better", action="store_true", help="the score rates quality, not hallucination")
    calibrate.add_argument("--beta", type=float, default=1.05, help="F-beta's beta (the paper: 1.05)")
    _add_clap_options(calibrate, batch_size=16)
    calibrate.set_defaults(handler=_calibrate_filter)

    review = commands.add_parser("review", help="listen to a run's clips beside their captions and judge them")
    review.add_argument("output", type=Path, help="the output folder of `fusion-datasets run`")
    review.add_argument("--sample", type=int, default=50, metavar="N", help="captions to review (default: 50)")
    review.add_argument("--seed", type=int, default=0, help="the sample's seed: the same seed, the same captions")
    review.add_argument("--port", type=int, default=8765, help="the port on 127.0.0.1 (0: a free one)")
    review.add_argument("--reviewer", default="reviewer", help="whose judgements: OUTPUT/review/NAME.jsonl")
    review.add_argument("--export", type=Path, metavar="DIR", help="write a read-only page to DIR, serve nothing")
    review.set_defaults(handler=_review)

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
    retrieval.add_argument("--map-protocol", choices=["sorted", "unsorted"], default="sorted",
                           help="A2T mAP@10: an audio's caption ranks sorted (WavCaps, Mei et al., FusionAudio) "
                                "or in caption order (LAION-CLAP's code; reads higher)")
    _add_clap_options(retrieval, batch_size=32)
    retrieval.set_defaults(handler=_eval_retrieval)

    predict = evaluation.add_parser("predict", help="an audio LM's answers to a benchmark (resumable JSONL)")
    from fusion_datasets.experts.audio_lm import FAMILIES

    families = "; ".join(f"{model_type}: {family.example}" for model_type, family in FAMILIES.items())
    predict.add_argument("--model", required=True,
                         help=f"an audio LM's Hub id or folder, of a family run in process ({families}; README: "
                              "Audio language models), or the served model's name with --backend server")
    predict.add_argument("--output", required=True, type=Path, help="the predictions JSONL (a rerun resumes)")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--max-new-tokens", type=int, default=256)
    predict.add_argument("--prompt", default="{instruction}", help="template around each row's instruction")
    predict.add_argument("--dtype", default="auto")
    predict.add_argument("--max-seconds", type=float, default=30.0,
                         help="each clip is cut to this (and to what its model's family takes: README)")
    predict.add_argument("--backend", choices=["transformers", "server"], default="transformers",
                         help="server: --model is the served model's name at --base-url (OpenAI-compatible)")
    predict.add_argument("--base-url", action="append", default=[], help="the model server's URL (repeatable)")
    predict.add_argument("--max-concurrency", type=int, default=16, help="requests in flight to the server")
    _add_benchmark_options(predict, predictions=False)
    predict.set_defaults(handler=_eval_predict)
    qa = evaluation.add_parser("qa", help="score answers to a QA benchmark (exact match, choice, LLM judge)")
    _add_benchmark_options(qa)
    qa.add_argument("--kind", choices=["closed", "choice", "audiobench", "air-bench-chat"],
                    help="how to score (default: from the benchmark's builder)")
    qa.add_argument("--judge-model", help="the judge LLM for open-ended answers: Hub id, folder, served name")
    qa.add_argument("--judge-kind", choices=["transformers", "server"], default="transformers")
    qa.add_argument("--judge-url", action="append", default=[], help="the judge server's URL (repeatable)")
    qa.add_argument("--judge-batch-size", type=int, default=8, help="in-process judge: prompts per batch")
    qa.add_argument("--judge-parse", choices=["last-token", "rating-line"], default="last-token",
                    help="AudioBench verdicts: the last token, 0 if not a rating (AudioBench's), or the last "
                         "'Rating: N', re-asked, left out if still missing")
    qa.add_argument("--chat-orders", choices=["both", "reference-first"], default="both",
                    help="AIR-Bench chat: judge each answer in both orders (averaged) or in AIR-Bench's only")
    qa.add_argument("--align-seed", type=int, default=0,
                    help="AIR-Bench Foundation with a judge: the seed of its alignment of answers to options")
    qa.add_argument("--align-temperature", type=float, default=1.0,
                    help="AIR-Bench Foundation with a judge: the alignment's temperature (AIR-Bench's: 1)")
    qa.add_argument("--max-reasks", type=int, default=2, help="re-asks of a verdict that does not parse")
    qa.add_argument("--judge-max-new-tokens", type=int, default=256, help="more for a reasoning judge")
    qa.set_defaults(handler=_eval_qa)
    classification = evaluation.add_parser("classification", help="zero-shot classification from captions")
    _add_benchmark_options(classification)
    classification.add_argument("--text-encoder", default="sentence-transformers/all-MiniLM-L6-v2",
                                help="a sentence-transformers or CLAP Hub id or folder")
    classification.add_argument("--template", default="sound of {label}", help="the text embedded per label")
    classification.set_defaults(handler=_eval_classification)

    train = commands.add_parser("train-clap", help="fine-tune a CLAP model on caption datasets (resumable)")
    train.add_argument("--model", required=True, help="a transformers CLAP Hub id or folder to start from")
    train.add_argument("--train", required=True, action="append", metavar="DATASET[:CONFIG]",
                       help="a run output, saved dataset or Hub id with caption(s) and audio (repeatable)")
    train.add_argument("--eval", required=True, help="a retrieval dataset (audio + captions) to evaluate on")
    train.add_argument("--output", required=True, type=Path, help="checkpoints, best model, eval results")
    train.add_argument("--preset", choices=["pretrain", "finetune"], default="pretrain",
                       help="pretrain: lr 5e-5, 15 epochs; finetune: lr 1e-5, 20 epochs (batch 196)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    train.add_argument("--push-to-hub", metavar="REPO", help="upload the best checkpoint with a model card")
    train.set_defaults(handler=_train_clap)

    zoo = commands.add_parser("tiny-zoo", help="write the tiny random-weight models used by the `tiny` config")
    zoo.add_argument("directory", type=Path)
    zoo.add_argument("--only", nargs="+", type=_tiny_model_name, metavar="NAME",
                     help="build only these models (default: all; see the tiny config)")
    zoo.add_argument("--overwrite", action="store_true", help="rebuild models that already exist")
    zoo.set_defaults(handler=_tiny_zoo)

    demo = commands.add_parser("demo", help="run the pipeline on bundled sample clips, on the CPU")
    demo.add_argument("--tiny-models", action="store_true", help="the offline tiny random-weight models (`tiny`)")
    demo.add_argument("--output", type=Path, default=Path("demo_output"))
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
