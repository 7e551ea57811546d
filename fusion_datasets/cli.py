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


def build_parser() -> argparse.ArgumentParser:
    from fusion_datasets.testing.zoo import TINY_MODEL_NAMES

    parser = argparse.ArgumentParser(prog="fusion-datasets", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    zoo = commands.add_parser("tiny-zoo", help="write the tiny random-weight models used by the `tiny` config")
    zoo.add_argument("directory", type=Path)
    zoo.add_argument("--only", nargs="+", choices=TINY_MODEL_NAMES, help="build only these models")
    zoo.add_argument("--overwrite", action="store_true", help="rebuild models that already exist")
    zoo.set_defaults(handler=_tiny_zoo)

    demo = commands.add_parser("demo", help="run the pipeline on bundled sample clips, on the CPU")
    demo.add_argument("--tiny-models", action="store_true", help="use the offline tiny random-weight models")
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
