"""`clapcorpus` command line.

Each command lives in its own module, which declares it once in ``COMMANDS`` (a
:class:`~clap_corpus.core.cli_help.Command`: its help, options, ``run(args, extra_args) -> int`` and,
if the command hands unknown options to Beam, ``beam_args=True``). Any option such a command does not
know passes straight through to Beam (``--runner=DataflowRunner --project=... --region=...``); with
``beam_options=True`` as well, an option Beam does not know either fails at start with the closest
known name (Beam would only log it).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from clap_corpus.core.cli_help import add_commands, log_level
from clap_corpus.core.errors import ConfigError
from clap_corpus.core.extras import MissingExtraError
from clap_corpus.pipeline.launch.preflight import StartCheckError
from clap_corpus.pipeline.launch.workers import RunFailed
from clap_corpus.pipeline.spec.beam_options import UnknownOptionError, unknown_options

COMMAND_MODULES = (  # pipeline/cli/<command>.py, one command each; the trainer's in its own room
    "clap_corpus.pipeline.cli.run",
    "clap_corpus.pipeline.cli.demo",
    "clap_corpus.pipeline.cli.plan",
    "clap_corpus.pipeline.cli.fetch",
    "clap_corpus.pipeline.cli.report",
    "clap_corpus.trainer.cli",  # train, eval
    "clap_corpus.pipeline.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clapcorpus", description="Build CLAP training corpora, and train CLAP on them."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        add_commands(sub, importlib.import_module(name).COMMANDS)
    return p


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level.upper() != "DEBUG":
        # Beam's local runner forwards every worker's INFO chatter; keep the terminal readable.
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "beam_options", False):
        command = _subparser(parser, args.command)
        problems = unknown_options(extra, known=command._option_string_actions)
        if problems:
            command.error("; ".join(problems))
    setup_logging(log_level(args))
    try:
        return int(args.func(args, extra))
    except StartCheckError as e:
        print(f"clapcorpus: start check failed:\n{e}", file=sys.stderr)
        return 2
    except MissingExtraError as e:  # a feature whose optional packages are not installed
        print(f"clapcorpus: {e}", file=sys.stderr)
        return 2
    except ConfigError as e:  # a wrong spec, or a K2C model that cannot be loaded
        print(f"clapcorpus: spec error: {e}", file=sys.stderr)
        return 2
    except UnknownOptionError as e:
        print(f"clapcorpus: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:  # a worker's error, or a worker process that died: the run cannot finish
        logging.getLogger(__name__).debug("the run's error in full", exc_info=e.__cause__)
        print(f"clapcorpus: the run stopped: {e}", file=sys.stderr)
        return 3


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


if __name__ == "__main__":
    sys.exit(main())
