"""Entry point of the ``avlearn`` command.

Each subcommand lives in ``avlearn/cli/<verb>.py`` and defines ``HELP`` (one line), ``DESCRIPTION`` (the
``--help`` text), ``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when their
subcommand runs, so ``avlearn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from avlearn.errors import AvlearnError

# verb -> module; the order is the order of ``avlearn --help``.
COMMANDS: dict[str, str] = {
    "demo": "avlearn.cli.demo",
    "synth": "avlearn.cli.synth",
    "extract": "avlearn.cli.extract",
    "train": "avlearn.cli.train",
    "eval": "avlearn.cli.evaluate",
    "predict": "avlearn.cli.predict",
    "score": "avlearn.cli.score",
    "data": "avlearn.cli.data",
    "convert": "avlearn.cli.convert",
    "info": "avlearn.cli.info",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avlearn",
        description="avlearn: audio-visual(-language) learning — methods, tasks, exact scorers, AVSynth.",
        epilog="Run `avlearn COMMAND --help` for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for verb, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            verb,
            help=module.HELP,
            description=module.DESCRIPTION,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one subcommand; user errors print one line and return 2."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides += extra  # overrides after a flag (`train a=1 --dry-run b=2`): argparse leaves them over
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except AvlearnError as err:
        print(f"avlearn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avlearn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
