"""Every command says what it does, shows its options' defaults and ends with examples to copy."""

from __future__ import annotations

import argparse
import re

import pytest

from clap_corpus.core.cli_help import log_level
from clap_corpus.pipeline.cli.main import build_parser
from clap_corpus.trainer.__main__ import main as trainer_main

PARSER = build_parser()
COMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices
# `bench` hands --help and every option to bench/bench_pipeline.py, which documents itself
DESCRIBED = sorted(name for name, p in COMMANDS.items() if p.add_help)


def test_every_command_but_bench_is_described():
    assert DESCRIBED == ["demo", "eval", "fetch", "plan", "report", "run", "train"]


@pytest.mark.parametrize("name", DESCRIBED)
def test_help_has_a_description_defaults_and_examples(name):
    parser = COMMANDS[name]
    text = parser.format_help()
    assert parser.description and len(parser.description.split()) >= 8, name
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert examples and all(e.startswith(("  clapcorpus ", "  torchrun ")) for e in examples if e.strip())
    assert any(f"clapcorpus {name}" in e for e in examples)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help, f"{name} {action.option_strings[-1]} has no help"
        if action.default not in (None, False):
            # the option's entry in the options list (up to the next option) speaks of its default
            options = text.split("\n\n", 2)[2]
            entry = re.search(
                r"\n  " + re.escape(action.option_strings[-1]) + r"\b(.*?)(?=\n  -|\n\n|$)", options, re.S
            )
            assert entry and "default" in entry.group(1), f"{name} {action.option_strings[-1]}"


def test_the_trainers_own_entry_point_shows_the_same_help(capsys):
    with pytest.raises(SystemExit) as e:
        trainer_main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert (
        out.startswith("usage: python -m clap_corpus.trainer train")
        and "(default: 64)" in out
        and "examples:" in out
        and "hf download roberta-base" in out
    )


def test_quiet_by_default_and_v_for_more():
    for argv, level in (
        ([], "WARNING"),
        (["-v"], "INFO"),
        (["-vv"], "DEBUG"),
        (["--log-level", "error"], "ERROR"),
    ):
        args, _ = PARSER.parse_known_args(["run", "--spec", "s.yaml", "--output", "o", *argv])
        assert log_level(args) == level, argv
    args, _ = PARSER.parse_known_args(["train", "--data", "d"])
    assert log_level(args) == "INFO"  # the trainer's loss lines are its output
