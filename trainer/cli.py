"""`clapcorpus train` and `clapcorpus eval`.

Heavy imports (torch, transformers) happen inside the commands, so the other commands start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any, TypeVar

from clap_corpus.core.cli_help import Command
from clap_corpus.core.extras import MissingExtraError, require_extra
from clap_corpus.trainer.config import (
    GROUPS,
    Declared,
    ModelConfig,
    OptionError,
    RunOptions,
    TrainConfig,
    declared,
)

EVAL_BATCH = 64  # eval's batch size for a checkpoint that does not say how it was trained
# Every option of `train` is a field of these models (trainer/config.py: name, type, default, range,
# help), in the order `train --help` lists them; the flags, their types, choices, defaults, help and
# sections are derived from the declarations, and so are the configs a command line builds.
TRAIN_MODELS: tuple[type, ...] = (TrainConfig, ModelConfig, RunOptions)
TRAIN = TrainConfig()
# eval's settings that default to the checkpoint's training run (eval_settings), and the corpus-reading
# ones: train's own options, with eval's defaults and help where they differ
EVAL_SETTINGS = ("threads", "batch_size", "workers", "mel", "precision")
EVAL_OPTIONS = ("batch_size", "threads", "precision", "corpus", "format", "mel", "workers", "device")
EVAL_HELP = {
    "batch_size": f"default: the training run's, else {EVAL_BATCH}",
    "threads": "torch CPU threads (default: the training run's setting)",
    "precision": "default: the training run's",
}
T = TypeVar("T")


def _cli(models: tuple[type, ...]) -> list[Declared]:
    return [d for model in models for d in declared(model) if d.option.cli]


def _off_switch(d: Declared) -> bool:
    """A switch on by default: its flag, --no-<name>, turns it off."""
    return d.kind is bool and d.default is True


def flag_of(d: Declared) -> str:
    return f"--no-{d.name}" if _off_switch(d) else f"--{d.name}"


def dest_of(d: Declared) -> str:
    return flag_of(d)[2:].replace("-", "_")


# The train command's option names (argparse dests) -> config fields: captions -> caption_source
FIELDS = {dest_of(d): d.path for d in _cli(TRAIN_MODELS)}


def add_options(
    parser: argparse.ArgumentParser,
    options: list[Declared],
    *,
    groups: bool = True,
    defaults: dict[str, Any] | None = None,
    helps: dict[str, str] | None = None,
) -> None:
    """A flag for each declared option: its name, type, choices, default and help from the declaration
    (``defaults`` and ``helps`` by field: another command's own), in its section of the help when
    ``groups``."""
    sections = {g: parser.add_argument_group(g) for g in GROUPS} if groups else {}
    if groups:  # the usage line lists them as the sections do: the command's own, then section by section
        options = sorted(options, key=lambda d: GROUPS.index(d.option.group) + 1 if d.option.group else 0)
    for d in options:
        where: Any = sections[d.option.group] if groups and d.option.group else parser
        help = (helps or {}).get(d.path, d.option.off if _off_switch(d) else d.option.help)
        kw: dict[str, Any] = {"help": help}
        if d.kind is bool:
            kw["action"] = "store_true"
        else:
            if d.kind in (int, float):
                kw["type"] = d.kind
            if d.choices:
                kw["choices"] = d.choices
            if d.option.required:
                kw["required"] = True
            else:
                default = d.option.none if d.default is None and d.option.none else d.default
                kw["default"] = (defaults or {}).get(d.path, default)
        where.add_argument(flag_of(d), **kw)


def _train_options(train: argparse.ArgumentParser) -> None:
    add_options(train, _cli(TRAIN_MODELS))


def _eval_options(ev: argparse.ArgumentParser) -> None:
    ev.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, or a run folder (its newest checkpoint)"
    )
    ev.add_argument("--data", required=True, help="a built corpus (or the demo folder)")
    ev.add_argument("--split", default="valid", help="split evaluated")
    ev.add_argument("--json", default=None, help="also write the report here as JSON")
    train_options = {d.path: d for d in _cli((TrainConfig,))}
    add_options(
        ev,
        [train_options[name] for name in EVAL_OPTIONS],
        groups=False,
        defaults=dict.fromkeys(EVAL_SETTINGS),
        helps=EVAL_HELP,
    )


def option_name(field: str) -> str:
    """The command line's name for config field ``field`` (``caption_source`` -> ``--captions``); a
    field no option sets keeps its name."""
    names = {d.path: flag_of(d) for d in _cli(TRAIN_MODELS)}
    return names.get(field, field)


def from_args(args: argparse.Namespace, model: type[T]) -> T:
    """The ``model`` a parsed command line asks for: each field a flag sets from its flag (nested
    models as a whole, so that a problem is named by its full path), the others at their defaults;
    raises :class:`OptionError` for a value that cannot work."""
    values: dict[str, Any] = {}
    for d in _cli((model,)):
        value = getattr(args, dest_of(d))
        if _off_switch(d):
            value = not value
        elif d.option.none and isinstance(value, str) and value.lower() == d.option.none:
            value = None
        *parents, name = d.path.split(".")
        at = values
        for part in parents:
            at = at.setdefault(part, {})
        at[name] = value
    return model(**values)


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, ModelConfig]:
    """The configs a ``train`` command line asks for; raises :class:`OptionError` for a value that
    cannot work."""
    return from_args(args, TrainConfig), from_args(args, ModelConfig)


def _fail(command: str, *problems: object) -> int:
    """How both commands stop short: one line per problem on stderr, exit code 2."""
    for problem in problems:
        print(f"clapcorpus {command}: {problem}", file=sys.stderr)
    return 2


def _refuse(command: str, e: OptionError) -> int:
    """One line per problem, naming the option; before anything is loaded."""
    return _fail(command, *(f"{option_name(field)}: {message}" for field, message in e.problems))


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        require_extra("trainer", "train")
    except MissingExtraError as e:
        return _fail("train", e)
    from clap_corpus.trainer.checkpoint import CheckpointError
    from clap_corpus.trainer.data import DataError
    from clap_corpus.trainer.text import TextModelError
    from clap_corpus.trainer.train import train

    try:
        tcfg, mcfg = configs_from_args(args)
        run = from_args(args, RunOptions)
    except OptionError as e:
        return _refuse("train", e)
    try:
        result = train(tcfg, mcfg, resume=run.resume, stop_at_step=run.stop_at_step, echo=print)
    except (CheckpointError, DataError, TextModelError, ValueError, FileNotFoundError) as e:
        return _fail("train", e)
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    print(f"trained {result.state.step} steps, {result.samples_per_second:.1f} samples/s over the run")
    return 0


def eval_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The settings an ``eval`` command line gives, checked as train checks them; raises
    :class:`OptionError` for a value that cannot work."""
    given = {name: getattr(args, name) for name in EVAL_OPTIONS if getattr(args, name) is not None}
    replace(TRAIN, **given)
    return given


def eval_settings(args: argparse.Namespace, trained: TrainConfig | None) -> dict[str, Any]:
    """The evaluation settings: each flag given, else the training run's (what its own evaluation
    used), else the default."""
    base = trained if trained is not None else replace(TRAIN, batch_size=EVAL_BATCH)
    chosen = replace(base, **{k: v for k, v in eval_flags(args).items() if k in EVAL_SETTINGS})
    return {name: getattr(chosen, name) for name in EVAL_SETTINGS}


def _eval(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        require_extra("trainer", "eval")
    except MissingExtraError as e:
        return _fail("eval", e)
    from clap_corpus.trainer.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint
    from clap_corpus.trainer.data import DataError, list_shards, resolve_layout
    from clap_corpus.trainer.evaluate import evaluate, format_report
    from clap_corpus.trainer.text import TextModelError
    from clap_corpus.trainer.train import autocast_for, load_for_eval, pick_device, setup_distributed

    try:
        eval_flags(args)
    except OptionError as e:
        return _refuse("eval", e)
    try:
        found = latest_checkpoint(args.checkpoint)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {args.checkpoint}")
        settings = eval_settings(args, read_checkpoint(found).train)
        device = pick_device(args.device, setup_distributed())
        model, tokenizer, mcfg = load_for_eval(found, device)
        shards = list_shards(resolve_layout(args.data, args.corpus), args.split, args.format)
        report = evaluate(
            model,
            tokenizer,
            shards,
            device,
            split=args.split,
            max_length=mcfg.text.max_length,
            batch_size=settings["batch_size"],
            workers=settings["workers"],
            mel_mode=settings["mel"],
            autocast=autocast_for(settings["precision"], device),
            threads=settings["threads"],
        )
    except (CheckpointError, DataError, TextModelError, FileNotFoundError) as e:
        return _fail("eval", e)
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, indent=1, sort_keys=True)
    return 0


COMMANDS = (
    Command(
        "train",
        help="train CLAP on a built corpus (torchrun for several GPUs)",
        description="Train a CLAP model (HTS-AT or a small CNN audio encoder, a Hugging Face or tiny text "
        "encoder) contrastively on a built corpus's shards, with checkpoints and an evaluation after each "
        "epoch. Downloads: the default --text-model roberta-base comes from the Hugging Face hub (once, "
        "into its cache: `hf download roberta-base`); --text-model tiny and --audio-encoder cnn need none.",
        examples=[
            "clapcorpus train --data demo-run --output demo-run/clap --audio-encoder cnn --text-model tiny "
            "--epochs 5",
            "torchrun --nproc_per_node=8 -m clap_corpus.trainer train --data gs://b/corpus "
            "--output runs/clap --tensorboard   # then: tensorboard --logdir runs/clap/tensorboard",
        ],
        options=_train_options,
        run=_train,
        log_level="INFO",  # the loss and eval lines are the trainer's output
    ),
    Command(
        "eval",
        help="retrieval and zero-shot metrics of a checkpoint on a corpus split",
        description="Text-to-audio and audio-to-text retrieval (R@1/5/10, mAP@10) and zero-shot "
        "classification of a checkpoint on a corpus split. Threads, batch size, workers, mel mode and "
        "precision default to the checkpoint's training run, so that eval prints exactly what the "
        "evaluation at the end of train printed (CPU kernels sum in another order with other threads or "
        "batch shapes).",
        examples=[
            "clapcorpus eval --checkpoint demo-run/clap --data demo-run --split valid --json report.json",
        ],
        options=_eval_options,
        run=_eval,
        log_level="INFO",
    ),
)
