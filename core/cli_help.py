"""How every command of the project describes itself: a sentence of what it does, each option with
its default, and examples. The pipeline's `clapcorpus` and the trainer's `python -m
clap_corpus.trainer` build their commands with :func:`add_command_parser`, so both read the same."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

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


def add_command_parser(
    sub: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    examples: Sequence[str],
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does, shows defaults and ends with ``examples``."""
    return sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXAMPLES + "\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=HelpFormatter,
    )
