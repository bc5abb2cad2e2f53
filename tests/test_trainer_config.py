"""The trainer's configuration is declared once (trainer/config.py) and `train`'s command line derived
from it (issue 27): the same flags as before, a flag for every field that is not CLI-less on purpose,
the values handed to the loaders by name, and checkpoints written before still loading and comparing
equal."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from docs_text import block_after, docs_page

from clap_corpus.core.cli_help import add_commands
from clap_corpus.trainer.__main__ import main
from clap_corpus.trainer.checkpoint import CONFIG_FILE, MODEL_FILE, check_compatible, read_checkpoint
from clap_corpus.trainer.cli import (
    COMMANDS,
    FIELDS,
    add_options,
    configs_from_args,
    from_args,
    option_name,
)
from clap_corpus.trainer.config import (
    RESUME_SENSITIVE,
    AudioConfig,
    Int,
    ModelConfig,
    OptionError,
    RunOptions,
    TextConfig,
    TrainConfig,
    Within,
    config_diff,
    config_model,
    declared,
    option,
    take,
)
from clap_corpus.trainer.data import StreamConfig

# `train` and `eval` as trainer/cli.py wrote them by hand before issue 27, read from their parsers:
# (flags, dest, default, type, choices, required, action, --help section)
TRAIN_BEFORE = [
    ("--data", "data", None, None, None, True, "store", None),
    ("--output", "output", "clap-run", None, None, False, "store", None),
    ("--corpus", "corpus", None, None, None, False, "store", None),
    ("--format", "format", "webdataset", None, ("webdataset", "parquet"), False, "store", None),
    ("--mel", "mel", "auto", None, ("auto", "stored", "compute"), False, "store", None),
    ("--workers", "workers", 2, int, None, False, "store", None),
    ("--device", "device", "auto", None, None, False, "store", None),
    ("--train-split", "train_split", "train", None, None, False, "store", None),
    ("--eval-split", "eval_split", "valid", None, None, False, "store", None),
    ("--captions", "captions", "text", None, ("text", "all", "k2c"), False, "store", None),
    ("--audio-encoder", "audio_encoder", "htsat", None, ("htsat", "cnn"), False, "store", "model"),
    ("--audio-size", "audio_size", None, None, None, False, "store", "model"),
    ("--no-fusion", "no_fusion", False, None, None, False, "store_true", "model"),
    ("--text-model", "text_model", "roberta-base", None, None, False, "store", "model"),
    ("--text-max-length", "text_max_length", 77, int, None, False, "store", "model"),
    ("--joint-dim", "joint_dim", 512, int, None, False, "store", "model"),
    ("--batch-size", "batch_size", 64, int, None, False, "store", "optimisation"),
    ("--grad-accum", "grad_accum", 1, int, None, False, "store", "optimisation"),
    ("--epochs", "epochs", 1, int, None, False, "store", "optimisation"),
    ("--max-steps", "max_steps", None, int, None, False, "store", "optimisation"),
    ("--lr", "lr", 0.0001, float, None, False, "store", "optimisation"),
    ("--weight-decay", "weight_decay", 0.1, float, None, False, "store", "optimisation"),
    ("--warmup-steps", "warmup_steps", 100, int, None, False, "store", "optimisation"),
    ("--min-lr", "min_lr", 0.0, float, None, False, "store", "optimisation"),
    ("--grad-clip", "grad_clip", None, float, None, False, "store", "optimisation"),
    ("--shuffle-buffer", "shuffle_buffer", 1000, int, None, False, "store", "optimisation"),
    ("--seed", "seed", 0, int, None, False, "store", "optimisation"),
    ("--precision", "precision", "auto", None, ("auto", "fp32", "bf16"), False, "store", "optimisation"),
    ("--threads", "threads", None, int, None, False, "store", "run"),
    ("--log-every", "log_every", 10, int, None, False, "store", "run"),
    ("--tensorboard", "tensorboard", False, None, None, False, "store_true", "run"),
    ("--save-every", "save_every", None, int, None, False, "store", "run"),
    ("--keep-checkpoints", "keep_checkpoints", 2, int, None, False, "store", "run"),
    ("--eval-every-epochs", "eval_every_epochs", 1, int, None, False, "store", "run"),
    ("--resume", "resume", None, None, None, False, "store", "run"),
    ("--stop-at-step", "stop_at_step", None, int, None, False, "store", "run"),
    ("--log-level", "log_level", "INFO", None, None, False, "store", None),
    ("-v --verbose", "verbose", 0, None, None, False, "count", None),
]
EVAL_BEFORE = [
    ("--checkpoint", "checkpoint", None, None, None, True, "store", None),
    ("--data", "data", None, None, None, True, "store", None),
    ("--split", "split", "valid", None, None, False, "store", None),
    ("--json", "json", None, None, None, False, "store", None),
    ("--batch-size", "batch_size", None, int, None, False, "store", None),
    ("--threads", "threads", None, int, None, False, "store", None),
    ("--precision", "precision", None, None, ("auto", "fp32", "bf16"), False, "store", None),
    ("--corpus", "corpus", None, None, None, False, "store", None),
    ("--format", "format", "webdataset", None, ("webdataset", "parquet"), False, "store", None),
    ("--mel", "mel", None, None, ("auto", "stored", "compute"), False, "store", None),
    ("--workers", "workers", None, int, None, False, "store", None),
    ("--device", "device", "auto", None, None, False, "store", None),
    ("--log-level", "log_level", "INFO", None, None, False, "store", None),
    ("-v --verbose", "verbose", 0, None, None, False, "count", None),
]
# The fields no flag sets, on purpose (a new field needs a flag or a place here)
CLI_LESS = {
    "betas",
    "eps",
    "audio.window_size",
    "audio.spec_size",
    "audio.patch_size",
    "audio.dropout",
    "text.pooling",
    "text.tiny_hidden",
    "text.tiny_layers",
    "text.tiny_heads",
    "text.tiny_vocab",
    "init_temperature",
    "max_logit_scale",
}
# A command line and the config.json the trainer wrote for it before issue 27 (trainer/checkpoint.py:
# {"model": ModelConfig.to_json(), "train": TrainConfig.to_json()}, json.dump(indent=1, sort_keys=True))
ARGV = [
    *("--data", "/data/built", "--output", "runs/clap", "--format", "parquet", "--eval-split", "none"),
    *("--captions", "all", "--batch-size", "8", "--max-steps", "20", "--lr", "1e-3", "--min-lr", "1e-5"),
    *("--grad-clip", "1.0", "--workers", "0", "--threads", "1", "--tensorboard", "--save-every", "5"),
    *("--audio-encoder", "cnn", "--audio-size", "micro", "--no-fusion", "--text-model", "tiny"),
    *("--joint-dim", "32"),
]
WRITTEN_BEFORE = {
    "model": {
        "audio": {"dropout": 0.0, "encoder": "cnn", "fusion": False, "patch_size": 4, "size": "micro",
                  "spec_size": 256, "window_size": 8},
        "init_temperature": 0.07, "joint_dim": 32, "max_logit_scale": 100.0,
        "text": {"max_length": 77, "model": "tiny", "pooling": "auto", "tiny_heads": 2, "tiny_hidden": 128,
                 "tiny_layers": 2, "tiny_vocab": 1000},
    },
    "train": {
        "batch_size": 8, "betas": [0.9, 0.999], "caption_source": "all", "corpus": None,
        "data": "/data/built", "device": "auto", "epochs": 1, "eps": 1e-08, "eval_every_epochs": 1,
        "eval_split": None, "format": "parquet", "grad_accum": 1, "grad_clip": 1.0, "keep_checkpoints": 2,
        "log_every": 10, "lr": 0.001, "max_steps": 20, "mel": "auto", "min_lr": 1e-05, "output": "runs/clap",
        "precision": "auto", "save_every": 5, "seed": 0, "shuffle_buffer": 1000, "tensorboard": True,
        "threads": 1, "train_split": "train", "warmup_steps": 100, "weight_decay": 0.1, "workers": 0,
    },
}  # fmt: skip
RESUME_SENSITIVE_BEFORE = {
    "data", "corpus", "format", "train_split", "caption_source", "batch_size", "grad_accum", "epochs",
    "max_steps", "lr", "weight_decay", "warmup_steps", "min_lr", "betas", "workers", "shuffle_buffer",
    "seed", "threads",
}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_commands(parser.add_subparsers(dest="command"), COMMANDS)
    return parser


def _command(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _table(parser: argparse.ArgumentParser) -> list[tuple]:
    kinds = {
        argparse._StoreAction: "store",
        argparse._StoreTrueAction: "store_true",
        argparse._CountAction: "count",
    }
    section = {id(a): g.title for g in parser._action_groups for a in g._group_actions}
    return [
        (
            " ".join(a.option_strings),
            a.dest,
            a.default,
            a.type,
            tuple(a.choices) if a.choices else None,
            a.required,
            kinds[type(a)],
            None if section[id(a)] == "options" else section[id(a)],
        )
        for a in parser._actions
        if a.dest != "help"
    ]


def _args(argv: list[str]) -> argparse.Namespace:
    return _parser().parse_args(["train", *argv])


def test_the_derived_command_line_is_the_one_written_by_hand_before():
    for name, before in (("train", TRAIN_BEFORE), ("eval", EVAL_BEFORE)):
        now = _table(_command(name))
        for old, new in zip(before, now, strict=False):
            assert new == old, name
        assert len(now) == len(before), name
        # the values a flag parses to keep their types (an int default stays an int)
        for row in now:
            assert type(row[2]) is type(dict((r[1], r[2]) for r in before)[row[1]]), (name, row)


def test_every_field_has_a_flag_or_is_cli_less_on_purpose():
    options = [d for model in (TrainConfig, ModelConfig, RunOptions) for d in declared(model)]
    cli_less = {d.path for d in options if not d.option.cli}
    assert cli_less == CLI_LESS
    flagged = {d.path for d in options if d.option.cli}
    # every flag of train sets one field, every field with a flag has one
    own = {"log_level", "verbose"}  # the command's logging, not the trainer's configuration
    dests = {a.dest for a in _command("train")._actions} - {"help"} - own
    assert set(FIELDS) == dests and set(FIELDS.values()) == flagged
    assert len(flagged) + len(cli_less) == len(options)
    # a flag is named by its field unless it says otherwise
    assert option_name("lr") == "--lr" and option_name("text.max_length") == "--text-max-length"
    assert option_name("caption_source") == "--captions" and option_name("audio.fusion") == "--no-fusion"
    assert option_name("audio.spec_size") == "audio.spec_size"  # no flag: the field's name


def test_a_command_line_builds_the_configs_the_models_declare():
    tcfg, mcfg = configs_from_args(_args(ARGV))
    assert mcfg == ModelConfig(
        audio=AudioConfig(encoder="cnn", size="micro", fusion=False),
        text=TextConfig(model="tiny"),
        joint_dim=32,
    )
    expected = dict(WRITTEN_BEFORE["train"], betas=(0.9, 0.999))
    assert tcfg == TrainConfig(**expected)
    # the word for None is any case (as before); left alone, every value is the model's default
    assert configs_from_args(_args(["--data", "d", "--eval-split", "None"]))[0].eval_split is None
    assert configs_from_args(_args(["--data", "d"])) == (TrainConfig(data="d"), ModelConfig())
    assert from_args(
        _args(["--data", "d", "--stop-at-step", "7", "--resume", "auto"]), RunOptions
    ) == RunOptions(resume="auto", stop_at_step=7)


def test_the_encoders_default_size_is_one_rule():
    # --audio-encoder cnn without --audio-size trains the small CNN, and so does the model built in code
    # (before issue 27 the command line chose it and AudioConfig(encoder="cnn") refused size 'tiny')
    _, mcfg = configs_from_args(_args(["--data", "d", "--audio-encoder", "cnn"]))
    assert mcfg.audio == AudioConfig(encoder="cnn") == AudioConfig(encoder="cnn", size="small")
    assert AudioConfig().size == "tiny" and AudioConfig().to_json()["size"] == "tiny"


def test_a_checkpoint_written_before_loads_and_compares_equal(tmp_path):
    folder = tmp_path / "step_00000020"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(json.dumps(WRITTEN_BEFORE, indent=1, sort_keys=True))
    (folder / MODEL_FILE).write_bytes(b"")  # read_checkpoint reads the configuration only
    ckpt = read_checkpoint(str(folder))
    tcfg, mcfg = configs_from_args(_args(ARGV))  # the same command line, as --resume runs it again
    assert ckpt.model == mcfg and ckpt.train == tcfg
    check_compatible(ckpt, mcfg)  # the model check passes
    assert config_diff(ckpt.train.to_json(), tcfg.to_json()) == []  # and the resume check sees no change
    # written again, the file is the same bytes
    doc = {"model": mcfg.to_json(), "train": tcfg.to_json()}
    assert json.dumps(doc, indent=1, sort_keys=True) == (folder / CONFIG_FILE).read_text()
    assert set(RESUME_SENSITIVE) == RESUME_SENSITIVE_BEFORE


def test_a_changed_setting_is_named_by_the_resume_check():
    before = TrainConfig.from_json(WRITTEN_BEFORE["train"])
    tcfg, _ = configs_from_args(_args([*ARGV, "--batch-size", "16"]))
    changed = [
        line
        for line in config_diff(before.to_json(), tcfg.to_json())
        if line.split(":")[0] in RESUME_SENSITIVE
    ]
    assert changed == ["batch_size: 8 != 16"]


def test_the_loaders_config_takes_the_runs_values_by_name():
    tcfg = TrainConfig(
        batch_size=8, workers=3, shuffle_buffer=40, seed=9, caption_source="k2c", mel="compute"
    )
    assert take(StreamConfig, tcfg, rank=1, world=2) == StreamConfig(
        batch_size=8,
        workers=3,
        shuffle_buffer=40,
        seed=9,
        caption_source="k2c",
        mel="compute",
        rank=1,
        world=2,
    )
    # every field of the stream's config but the process's place is a field of the run's
    run_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert {f.name for f in dataclasses.fields(StreamConfig)} - run_fields == {"rank", "world"}


def test_train_refuses_an_audio_size_the_encoder_lacks_with_one_line(tmp_path, capsys):
    # before issue 27 this was a traceback (a ValueError outside the option check)
    argv = [
        "train",
        "--data",
        str(tmp_path / "none"),
        "--output",
        str(tmp_path / "o"),
        "--audio-size",
        "huge",
    ]
    assert main(argv) == 2
    line = "clapcorpus train: --audio-size: unknown htsat size 'huge' (known: tiny, base, mini, micro)"
    assert capsys.readouterr().err.strip().splitlines() == [line]
    assert main([*argv[:-1], "small", "--audio-encoder", "cnn", "--lr", "0", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [  # every problem at once, one line each
        "clapcorpus train: --batch-size: must be in [1, 1000000], got 0",
        "clapcorpus train: --lr: must be in (0, 10], got 0.0",
    ]


@pytest.mark.parametrize(
    ("flag", "value", "line"),
    [
        ("--batch-size", "0", "--batch-size: must be in [1, 1000000], got 0"),
        ("--threads", "0", "--threads: must be in [1, 1000000], got 0"),
        ("--workers", "-1", "--workers: must be in [0, 1024], got -1"),
    ],
)
def test_eval_checks_its_settings_as_train_does(flag, value, line, tmp_path, capsys):
    # before issue 27 eval took any number and failed later (here: no checkpoint found)
    argv = ["eval", "--checkpoint", str(tmp_path / "none"), "--data", str(tmp_path), f"{flag}={value}"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"clapcorpus eval: {line}"]


def test_an_option_is_declared_once_and_the_command_line_follows():
    """A new option is one field: its flag, type, choices, default, help and section come with it."""

    @config_model
    class Toy:
        rate: Annotated[float, Within(0, 1, low_open=True)] = option(0.5, "a rate", group="optimisation")
        count: Annotated[Int, Within(1, 9)] | None = option(None, "a count (default: none)", group="run")
        mode: Literal["a", "b"] = option("a", "a mode", flag="toy-mode")
        split: str | None = option("valid", "a split; 'none' for none", none="none")
        fast: bool = option(True, "go fast", off="go slowly")
        quiet: bool = option(False, "say less")
        hidden: int = option(3, "not on the command line", cli=False)

    parser = argparse.ArgumentParser()
    add_options(parser, [d for d in declared(Toy) if d.option.cli])
    assert _table(parser) == [
        ("--toy-mode", "toy_mode", "a", None, ("a", "b"), False, "store", None),
        ("--split", "split", "valid", None, None, False, "store", None),
        ("--no-fast", "no_fast", False, None, None, False, "store_true", None),
        ("--quiet", "quiet", False, None, None, False, "store_true", None),
        ("--rate", "rate", 0.5, float, None, False, "store", "optimisation"),
        ("--count", "count", None, int, None, False, "store", "run"),
    ]
    helps = [
        "a mode",
        "a split; 'none' for none",
        "go slowly",
        "say less",
        "a rate",
        "a count (default: none)",
    ]
    assert [a.help for a in parser._actions[1:]] == helps
    args = parser.parse_args(["--rate", "0.25", "--count", "4", "--split", "none", "--no-fast", "--quiet"])
    assert from_args(args, Toy) == Toy(rate=0.25, count=4, mode="a", split=None, fast=False, quiet=True)
    with pytest.raises(OptionError) as e:
        from_args(parser.parse_args(["--count", "10"]), Toy)
    assert (e.value.field, e.value.message) == ("count", "must be in [1, 9], got 10")


def test_an_undeclared_field_is_refused():
    @config_model
    class Loose:
        n: int = 3

    with pytest.raises(TypeError, match=r"Loose.n is not declared with option\(\)"):
        list(declared(Loose))


def test_the_readmes_example_is_the_declaration():
    root = Path(__file__).resolve().parents[1]
    page = docs_page("training.md")
    block = block_after(page, "Every option is declared once, in `trainer/config.py`", "python")
    code = re.sub(r"\s*#.*", "", block).strip()  # as written in the model, without the comment
    assert code in (root / "trainer" / "config.py").read_text()
