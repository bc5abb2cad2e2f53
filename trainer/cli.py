"""`clapcorpus train` and `clapcorpus eval`.

Heavy imports (torch, transformers) happen inside the commands, so the other commands start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clap_corpus.core.cli_help import add_command_parser, add_logging_options
from clap_corpus.core.extras import MissingExtraError, require_extra
from clap_corpus.trainer.config import (
    CAPTION_SOURCES,
    FORMATS,
    MAX_COUNT,
    MEL_MODES,
    AudioConfig,
    ModelConfig,
    OptionError,
    TextConfig,
    TrainConfig,
    check_range,
)

EVAL_BATCH = 64  # eval's batch size for a checkpoint that does not say how it was trained
# The defaults of the options are the config models' own (one place: trainer/config.py); configs
# built from a command line that sets nothing equal the models' defaults (tests/test_option_sweep.py).
TRAIN = TrainConfig()
MODEL = ModelConfig()
_TRAIN_OPTIONS: set[str] = set()  # the train command's option names (argparse dests), once it is built
# Options whose name is not their config field's
FIELDS = {
    "captions": "caption_source",
    "text_model": "text.model",
    "text_max_length": "text.max_length",
    "audio_encoder": "audio.encoder",
    "audio_size": "audio.size",
}


def add_command(sub: argparse._SubParsersAction) -> None:
    train = add_command_parser(
        sub,
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
    )
    train.add_argument(
        "--data", required=True, help="a built corpus: the folder `clapcorpus run --output` wrote"
    )
    train.add_argument("--output", default=TRAIN.output, help="run folder: checkpoints, logs")
    _data_args(train)
    train.add_argument("--train-split", default=TRAIN.train_split, help="split trained on")
    train.add_argument(
        "--eval-split",
        default=TRAIN.eval_split or "none",
        help="split evaluated after each epoch; 'none' for none",
    )
    train.add_argument(
        "--captions",
        choices=CAPTION_SOURCES,
        default=TRAIN.caption_source,
        help="text: one of `text` per epoch (LAION's --text-augment-selection none); all: one of "
        "`text_augment_all` (captions plus the K2C one) where present; k2c: the K2C caption where "
        "there is one",
    )
    model = train.add_argument_group("model")
    model.add_argument(
        "--audio-encoder",
        choices=("htsat", "cnn"),
        default=MODEL.audio.encoder,
        help="LAION-CLAP's HTS-AT or a small CNN",
    )
    model.add_argument(
        "--audio-size",
        default=None,
        help="htsat: tiny (default), base, mini, micro; cnn: small (default), micro",
    )
    model.add_argument(
        "--no-fusion", action="store_true", help="global view only (no attentional feature fusion)"
    )
    model.add_argument(
        "--text-model",
        default=MODEL.text.model,
        help="Hugging Face id or folder, or 'tiny' (built from the corpus captions)",
    )
    model.add_argument(
        "--text-max-length", type=int, default=MODEL.text.max_length, help="caption tokens kept"
    )
    model.add_argument("--joint-dim", type=int, default=MODEL.joint_dim, help="size of the shared embedding")
    opt = train.add_argument_group("optimisation")
    opt.add_argument("--batch-size", type=int, default=TRAIN.batch_size, help="per process")
    opt.add_argument("--grad-accum", type=int, default=TRAIN.grad_accum, help="batches per optimizer step")
    opt.add_argument("--epochs", type=int, default=TRAIN.epochs, help="passes over the train split")
    opt.add_argument(
        "--max-steps", type=int, default=TRAIN.max_steps, help="optimizer steps (overrides --epochs)"
    )
    opt.add_argument("--lr", type=float, default=TRAIN.lr, help="peak learning rate (AdamW)")
    opt.add_argument("--weight-decay", type=float, default=TRAIN.weight_decay, help="AdamW weight decay")
    opt.add_argument(
        "--warmup-steps", type=int, default=TRAIN.warmup_steps, help="linear warm-up, then cosine decay"
    )
    opt.add_argument(
        "--min-lr", type=float, default=TRAIN.min_lr, help="learning rate at the end of the cosine (<= --lr)"
    )
    opt.add_argument(
        "--grad-clip", type=float, default=TRAIN.grad_clip, help="clip gradients to this norm (default: off)"
    )
    opt.add_argument(
        "--shuffle-buffer",
        type=int,
        default=TRAIN.shuffle_buffer,
        help="samples per worker (~0.5 MB each with stored mel)",
    )
    opt.add_argument(
        "--seed", type=int, default=TRAIN.seed, help="initialisation, shuffling and caption draws"
    )
    opt.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default=TRAIN.precision,
        help="auto: bf16 autocast on CUDA",
    )
    run = train.add_argument_group("run")
    run.add_argument(
        "--threads",
        type=int,
        default=TRAIN.threads,
        help="torch CPU threads (default: torch's choice); on a busy or small CPU, 1 is often fastest",
    )
    run.add_argument("--log-every", type=int, default=TRAIN.log_every, help="steps between log lines")
    run.add_argument(
        "--tensorboard",
        action="store_true",
        help="also write loss, learning rate, logit scale / temperature and eval metrics as TensorBoard "
        "event files under <output>/tensorboard (needs the tensorboard package: the trainer extra)",
    )
    run.add_argument(
        "--save-every",
        type=int,
        default=TRAIN.save_every,
        help="steps between checkpoints (the last step is always saved)",
    )
    run.add_argument(
        "--keep-checkpoints", type=int, default=TRAIN.keep_checkpoints, help="newest checkpoints kept on disk"
    )
    run.add_argument(
        "--eval-every-epochs",
        type=int,
        default=TRAIN.eval_every_epochs,
        help="epochs between evaluations (0: none)",
    )
    run.add_argument(
        "--resume", default=None, help="checkpoint or run folder, or 'auto' (newest under --output)"
    )
    run.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="stop and save there; the schedule still spans the whole run",
    )
    train.set_defaults(func=_train)
    _TRAIN_OPTIONS.update(a.dest for a in train._actions)

    ev = add_command_parser(
        sub,
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
    )
    ev.add_argument(
        "--checkpoint", required=True, help="checkpoint folder, or a run folder (its newest checkpoint)"
    )
    ev.add_argument("--data", required=True, help="a built corpus (or the demo folder)")
    ev.add_argument("--split", default="valid", help="split evaluated")
    ev.add_argument("--json", default=None, help="also write the report here as JSON")
    ev.add_argument(
        "--batch-size", type=int, default=None, help=f"default: the training run's, else {EVAL_BATCH}"
    )
    ev.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: the training run's setting)"
    )
    ev.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default=None, help="default: the training run's"
    )
    _data_args(ev)
    ev.set_defaults(func=_eval, workers=None, mel=None)

    for sp in (train, ev):
        add_logging_options(sp, "INFO")  # the loss and eval lines are the trainer's output


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", default=TRAIN.corpus, help="corpus name (default: from summary.json)")
    p.add_argument("--format", choices=FORMATS, default=TRAIN.format, help="which shards to read")
    p.add_argument(
        "--mel",
        choices=MEL_MODES,
        default=TRAIN.mel,
        help="auto: the stored views (in the tars, or the sidecar views shards of formats: views), else "
        "computed on the device from the FLAC; stored: only samples with stored views; compute: always "
        "from the FLAC",
    )
    p.add_argument(
        "--workers", type=int, default=TRAIN.workers, help="data-loader processes (0: in the main process)"
    )
    p.add_argument("--device", default=TRAIN.device, help="auto: CUDA when there is one, else CPU")


def option_name(field: str) -> str:
    """The command line's name for config field ``field`` (``caption_source`` -> ``--captions``); a
    field no option sets keeps its name."""
    names = {f: o for o, f in FIELDS.items()}
    option = names.get(field, field if field in _TRAIN_OPTIONS else "")
    return f"--{option.replace('_', '-')}" if option else field


def configs_from_args(args: argparse.Namespace) -> tuple[TrainConfig, ModelConfig]:
    """The configs a ``train`` command line asks for; raises :class:`OptionError` (or ValueError) for
    a value that cannot work."""
    size = args.audio_size or ("tiny" if args.audio_encoder == "htsat" else "small")
    mcfg = ModelConfig(
        audio=AudioConfig(encoder=args.audio_encoder, size=size, fusion=not args.no_fusion),
        text=TextConfig(model=args.text_model, max_length=args.text_max_length),
        joint_dim=args.joint_dim,
    )
    tcfg = TrainConfig(
        data=args.data,
        output=args.output,
        corpus=args.corpus,
        format=args.format,
        train_split=args.train_split,
        eval_split=None if args.eval_split.lower() == "none" else args.eval_split,
        caption_source=args.captions,
        mel=args.mel,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        min_lr=args.min_lr,
        grad_clip=args.grad_clip,
        workers=args.workers,
        shuffle_buffer=args.shuffle_buffer,
        seed=args.seed,
        precision=args.precision,
        device=args.device,
        threads=args.threads,
        log_every=args.log_every,
        tensorboard=args.tensorboard,
        save_every=args.save_every,
        eval_every_epochs=args.eval_every_epochs,
        keep_checkpoints=args.keep_checkpoints,
    )
    return tcfg, mcfg


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        require_extra("trainer", "train")
    except MissingExtraError as e:
        print(f"clapcorpus train: {e}", file=sys.stderr)
        return 2
    from clap_corpus.trainer.checkpoint import CheckpointError
    from clap_corpus.trainer.data import DataError
    from clap_corpus.trainer.text import TextModelError
    from clap_corpus.trainer.train import train

    try:
        tcfg, mcfg = configs_from_args(args)
        check_range("stop_at_step", args.stop_at_step, 1, MAX_COUNT, optional=True)
    except OptionError as e:  # before anything is loaded: one line naming the option
        print(f"clapcorpus train: {option_name(e.field)}: {e.message}", file=sys.stderr)
        return 2
    try:
        result = train(tcfg, mcfg, resume=args.resume, stop_at_step=args.stop_at_step, echo=print)
    except (CheckpointError, DataError, TextModelError, ValueError, FileNotFoundError) as e:
        print(f"clapcorpus train: {e}", file=sys.stderr)
        return 2
    if result.checkpoint:
        print(f"checkpoint: {result.checkpoint}")
    print(f"trained {result.state.step} steps, {result.samples_per_second:.1f} samples/s over the run")
    return 0


def eval_settings(args: argparse.Namespace, trained: TrainConfig | None) -> dict[str, Any]:
    """The evaluation settings: each flag given, else the training run's (what its own evaluation
    used), else the default."""

    def pick(flag: Any, attr: str, default: Any) -> Any:
        if flag is not None:
            return flag
        return getattr(trained, attr) if trained is not None else default

    return {
        "threads": pick(args.threads, "threads", TRAIN.threads),
        "batch_size": pick(args.batch_size, "batch_size", EVAL_BATCH),
        "workers": pick(args.workers, "workers", TRAIN.workers),
        "mel": pick(args.mel, "mel", TRAIN.mel),
        "precision": pick(args.precision, "precision", TRAIN.precision),
    }


def _eval(args: argparse.Namespace, extra: list[str]) -> int:
    try:
        require_extra("trainer", "eval")
    except MissingExtraError as e:
        print(f"clapcorpus eval: {e}", file=sys.stderr)
        return 2
    from clap_corpus.trainer.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint
    from clap_corpus.trainer.data import DataError, list_shards, resolve_layout
    from clap_corpus.trainer.evaluate import evaluate, format_report
    from clap_corpus.trainer.text import TextModelError
    from clap_corpus.trainer.train import autocast_for, load_for_eval, pick_device, setup_distributed

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
        print(f"clapcorpus eval: {e}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_json(), f, indent=1, sort_keys=True)
    return 0
