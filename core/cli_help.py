"""How every command of the project is declared and describes itself: a sentence of what it does, each
option with its default, and examples. A command module declares each of its commands once, as a
:class:`Command`; the pipeline's `clapcorpus` and the trainer's `python -m clap_corpus.trainer` add
them with :func:`add_commands`, so both read the same."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass

EXAMPLES = "examples:"


class HelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` after every option whose help does not already speak of its default;
    the description is wrapped, the examples keep their lines (one command each, to copy)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(EXAMPLES):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return textwrap.fill(" ".join(text.split()), width, initial_indent=indent, subsequent_indent=indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and default not in (None, False, argparse.SUPPRESS)
            and "default" not in text
            and "%(default)" not in text
        ):
            text = f"{text} (default: %(default)s)" if text else "default: %(default)s"
        return text


def add_logging_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``--log-level`` and ``-v`` (INFO) / ``-vv`` (DEBUG, Beam's own logs too); read back by
    :func:`log_level`."""
    parser.add_argument("--log-level", default=default, help="logging level")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v: INFO logs; -vv: DEBUG, Beam's own logs too"
    )


def log_level(args: argparse.Namespace) -> str:
    verbose = getattr(args, "verbose", 0)
    return "DEBUG" if verbose >= 2 else "INFO" if verbose == 1 else getattr(args, "log_level", "INFO").upper()


@dataclass(frozen=True)
class Command:
    """One subcommand: its ``--help`` (what it does, its options with their defaults, ``examples``),
    its own options, what runs it and how much it logs.

    ``run(args, extra_args) -> exit code``; ``options(parser)`` adds the command's own flags (the
    logging options follow them, ``log_level`` the default). ``beam_args``: options the command does
    not know pass through to Beam as ``extra_args``; ``beam_options`` as well: one Beam does not know
    either fails at start (pipeline/cli/main.py). ``passthrough``: the command hands every option,
    ``--help`` included, to a program that describes itself (``clapcorpus bench``), as ``extra_args``."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, list[str]], int]
    description: str = ""
    examples: Sequence[str] = ()
    options: Callable[[argparse.ArgumentParser], None] | None = None
    # quiet by default: a local run's progress line and final report say what it needs
    log_level: str = "WARNING"
    beam_args: bool = False
    beam_options: bool = False
    passthrough: bool = False

    def add_to(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        if self.passthrough:
            parser = sub.add_parser(self.name, help=self.help, add_help=False)
        else:
            parser = sub.add_parser(
                self.name,
                help=self.help,
                description=self.description,
                epilog=EXAMPLES + "\n" + "\n".join(f"  {e}" for e in self.examples),
                formatter_class=HelpFormatter,
            )
            if self.options is not None:
                self.options(parser)
            add_logging_options(parser, self.log_level)
        # main.py reads these back: which options the command hands on as extra_args, and checks
        parser.set_defaults(
            func=self.run, beam_args=self.beam_args or self.passthrough, beam_options=self.beam_options
        )
        return parser


def add_commands(sub: argparse._SubParsersAction, commands: Sequence[Command]) -> None:
    for command in commands:
        command.add_to(sub)
