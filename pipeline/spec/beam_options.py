"""Beam pipeline options: pass-through for any runner, with a sensible local default.

Without ``--runner`` we run the FnApiRunner in multi-processing mode on every core. Beam's default
DirectRunner would try Prism first, which downloads a binary at run time and runs Python code as
threads in one process (GIL-bound): useless for decoding audio.
"""

from __future__ import annotations

import argparse
import difflib
import functools
from collections.abc import Iterable

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, _BeamArgumentParser

LOCAL_DEFAULTS = ["--runner=FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0"]


class UnknownOptionError(ValueError):
    """An option neither clapcorpus nor Beam knows (Beam would log it and go on without it)."""


def has_flag(args: list[str], name: str) -> bool:
    return any(a == f"--{name}" or a.startswith(f"--{name}=") for a in args)


@functools.cache
def _beam_parser(classes: tuple[type, ...]) -> argparse.ArgumentParser:
    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False)
    for cls in classes:
        cls._add_argparse_args(parser)
    return parser


def beam_parser() -> argparse.ArgumentParser:
    """An argument parser that knows every option of every PipelineOptions class loaded now.

    Built as Beam's PipelineOptions.get_all_options builds its own (the direct subclasses, the first
    of each name), so that an option parses here exactly when Beam will use it."""
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    return _beam_parser(tuple(classes.values()))


def unknown_options(args: list[str], known: Iterable[str] = ()) -> list[str]:
    """One message per argument in ``args`` that Beam does not know, with the closest name among
    Beam's options and ``known`` (the command's own, e.g. ``--clips``)."""
    parser = beam_parser()
    _, unknown = parser.parse_known_args(args)
    names = sorted({*known, *(o for a in parser._actions for o in a.option_strings)})
    out = []
    after_option = False  # a bare word right after an unknown option is its value, not news
    for arg in unknown:
        if not arg.startswith("-"):
            if not after_option:
                out.append(f"unexpected argument {arg!r}")
            after_option = False
            continue
        after_option = "=" not in arg
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, names, n=1)
        # Beam's names use '_', ours '-': a mix-up of the two is the commonest slip
        close = close or difflib.get_close_matches(name.replace("-", "_"), names, n=1)
        out.append(f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def check_options(args: list[str], known: Iterable[str] = ()) -> None:
    """Raise :class:`UnknownOptionError` unless Beam knows every option in ``args``."""
    problems = unknown_options(args, known)
    if problems:
        raise UnknownOptionError("; ".join(problems))


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """Beam's options from ``beam_args`` (LOCAL_DEFAULTS without ``--runner``); an option Beam does
    not know raises :class:`UnknownOptionError`."""
    args = list(beam_args)
    check_options(args)
    if not has_flag(args, "runner"):
        args = LOCAL_DEFAULTS + args
    opts = PipelineOptions(args)
    # DoFns reference module-level code of this package; workers import it instead of unpickling
    # the main session.
    opts.view_as(SetupOptions).save_main_session = False
    return opts
