"""The training loop: AdamW, warm-up then cosine, bf16 autocast on GPU, gradient accumulation, DDP,
checkpoints with exact resume, logging of loss and throughput.

Exact resume: a checkpoint holds the weights, the optimizer state, the torch RNG state and the
position in the epoch (micro-batches consumed); the data stream fast-forwards to that position
(:mod:`trainer.data`), and the learning rate is a function of the step alone. On CPU, N steps in one
go and N/2 + N/2 around a save give bit-identical weights (tested).

DDP: run under ``torchrun``; every rank reads its own slots of the shard list, features are gathered
for the loss (the negatives of a step are the global batch), rank 0 logs, evaluates and saves.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from clap_corpus.trainer.checkpoint import (
    check_compatible,
    checkpoint_dir,
    latest_checkpoint,
    load_state,
    load_weights,
    prune_checkpoints,
    read_checkpoint,
    save_checkpoint,
)
from clap_corpus.trainer.config import RESUME_SENSITIVE, ModelConfig, TrainConfig, config_diff, take
from clap_corpus.trainer.data import (
    DataError,
    Shard,
    SkipCounts,
    StreamConfig,
    iter_shard,
    list_shards,
    resolve_layout,
    sample_captions,
    steps_per_epoch,
    train_loader,
)
from clap_corpus.trainer.evaluate import EvalReport, evaluate, format_report
from clap_corpus.trainer.loss import clip_loss
from clap_corpus.trainer.model import CLAP
from clap_corpus.trainer.text import (
    TINY,
    build_tiny_text_model,
    load_text_encoder,
    load_tokenizer,
    require_local_model,
    save_text_files,
    tokenize,
)
from clap_corpus.transforms.captions import ZERO_SHOT_PROMPT, label_phrase

log = logging.getLogger("trainer")

STATE_VERSION = 1
TINY_CAPTION_LIMIT = 50_000  # samples read to train the tiny tokenizer


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group torchrun set up (WORLD_SIZE > 1); NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
            dist.init_process_group("nccl")
        else:
            dist.init_process_group("gloo")
    return DistInfo(rank, world, local)


def pick_device(name: str, d: DistInfo) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    """bf16 autocast on CUDA by default; fp32 elsewhere unless bf16 is asked for."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def lr_at(step: int, cfg: TrainConfig, total: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from ``lr`` down to ``min_lr`` at ``total``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """LAION's split: no weight decay on gains, biases, norms and the logit scale."""
    decay, plain = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lname = name.lower()
        exempt = p.ndim < 2 or "bias" in lname or "norm" in lname or ".bn" in lname or "logit_scale" in lname
        (plain if exempt else decay).append(p)
    return [{"params": plain, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def corpus_texts(shards: list[Shard], limit: int = TINY_CAPTION_LIMIT) -> list[str]:
    """Captions, K2C captions and zero-shot prompts of the training split: the tiny tokenizer's input."""
    texts: list[str] = []
    counts = SkipCounts()
    seen = 0
    for shard in shards:
        for raw in iter_shard(shard, counts, "auto"):
            texts += sample_captions(raw.meta)
            k2c = raw.meta.get("text_augment_t5")
            if isinstance(k2c, str):
                texts.append(k2c)
            for label in raw.meta.get("labels") or []:
                if isinstance(label, str) and label_phrase(label):
                    texts.append(ZERO_SHOT_PROMPT.format(label=label_phrase(label)))
            seen += 1
            if seen >= limit:
                return texts
    return texts


def build_model(
    cfg: ModelConfig, text_source: str, *, pretrained: bool, seed: int, offline: bool = False
) -> tuple[CLAP, Any]:
    """The CLAP model and its tokenizer; weights seeded by ``seed`` (text weights from the hub if asked)."""
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(text_source, offline=offline)
    text = load_text_encoder(text_source, cfg.text, pretrained=pretrained, offline=offline)
    return CLAP(cfg, text), tokenizer


@dataclass
class RunState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch: int = 0  # micro-batches consumed in the current epoch
    samples: int = 0  # samples trained on by this rank
    skipped: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch": self.batch,
            "samples": self.samples,
            "skipped": dict(self.skipped),
        }


@dataclass
class TrainResult:
    model: CLAP
    state: RunState
    checkpoint: str | None
    report: EvalReport | None
    samples_per_second: float
    log: list[dict[str, Any]]


def _zero_loss(model: nn.Module) -> torch.Tensor:
    # An empty micro-batch (all its samples unreadable) still joins DDP's gradient all-reduce.
    total = sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
    assert isinstance(total, torch.Tensor)  # (not the 0 of no terms: the model has trainable parameters)
    return total


TENSORBOARD_DIR = "tensorboard"  # under the run's output folder


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a train_log.jsonl row as TensorBoard scalars (tag -> value).

    Train rows: loss, learning rate, the logit scale and its inverse, the temperature (LAION's
    trainer logs both), throughput. Eval rows: every metric, under the evaluated split."""
    if row.get("event") == "train":
        out = {
            f"train/{k}": float(row[k]) for k in ("loss", "lr", "logit_scale", "samples_per_s", "data_wait")
        }
        out["train/temperature"] = 1.0 / out["train/logit_scale"]
        return out
    if row.get("event") == "eval":
        split = row.get("split") or "eval"
        return {
            f"eval/{split}/{k}": float(v)
            for k, v in (row.get("metrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    return {}


class _Logger:
    """train_log.jsonl, the console, and TensorBoard's event files when asked for."""

    def __init__(self, path: str | None, echo: Callable[[str], None] | None, tensorboard: str | None = None):
        self.path, self.echo, self.rows = path, echo, []
        self.board = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # torch's writer needs the tensorboard package
                raise RuntimeError(
                    "--tensorboard needs the tensorboard package: pip install 'clap-corpus[trainer]'"
                ) from e
            self.board = SummaryWriter(tensorboard)

    def __call__(self, row: dict[str, Any], text: str) -> None:
        self.rows.append(row)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row, sort_keys=True) + "\n")
        if self.board is not None and "step" in row:
            for tag, value in scalars(row).items():
                self.board.add_scalar(tag, value, row["step"])
            self.board.flush()  # a run killed later still leaves its curves
        # One place on the console: the CLI prints, library callers get the log record.
        if self.echo:
            self.echo(text)
        else:
            log.info(text)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def train(
    tcfg: TrainConfig,
    mcfg: ModelConfig,
    *,
    resume: str | None = None,
    stop_at_step: int | None = None,
    echo: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train CLAP on ``tcfg.data``; returns the final state, checkpoint and evaluation.

    ``resume``: a checkpoint folder, a run output folder (its newest checkpoint), or ``"auto"``
    (the newest checkpoint under ``tcfg.output`` if there is one). ``stop_at_step``: stop and save
    after that step as if interrupted; the schedule still runs to the configured end.
    """
    # Captions are short and tokenised in the main process; the tokenizer's own thread pool only
    # makes every data-loader fork print a warning.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    threads = torch.get_num_threads()
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    try:
        return _train(tcfg, mcfg, resume=resume, stop_at_step=stop_at_step, echo=echo)
    finally:
        torch.set_num_threads(threads)  # a library call must not leave the process changed


def _train(
    tcfg: TrainConfig,
    mcfg: ModelConfig,
    *,
    resume: str | None,
    stop_at_step: int | None,
    echo: Callable[[str], None] | None,
) -> TrainResult:
    d = setup_distributed()
    device = pick_device(tcfg.device, d)
    autocast = autocast_for(tcfg.precision, device)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    os.makedirs(tcfg.output, exist_ok=True)

    layout = resolve_layout(tcfg.data, tcfg.corpus)
    shards = list_shards(layout, tcfg.train_split, tcfg.format)
    micro_per_epoch = steps_per_epoch(shards, tcfg.batch_size, d.world)
    opt_per_epoch = micro_per_epoch // tcfg.grad_accum
    if opt_per_epoch < 1:
        total_samples = sum(s.samples for s in shards)
        raise DataError(
            f"split '{tcfg.train_split}' has {total_samples} samples: fewer than one step of "
            f"batch {tcfg.batch_size} x accumulation {tcfg.grad_accum} x {d.world} processes"
        )
    micro_per_epoch = opt_per_epoch * tcfg.grad_accum
    total = tcfg.max_steps if tcfg.max_steps is not None else tcfg.epochs * opt_per_epoch

    ckpt = None
    if resume == "auto":
        found = latest_checkpoint(tcfg.output)
        ckpt = read_checkpoint(found) if found else None
    elif resume:
        found = latest_checkpoint(resume)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {resume}")
        ckpt = read_checkpoint(found)
    if ckpt is not None:
        check_compatible(ckpt, mcfg)
        if ckpt.train is not None:
            changed = [
                line
                for line in config_diff(ckpt.train.to_json(), tcfg.to_json())
                if line.split(":", 1)[0] in RESUME_SENSITIVE
            ]
            if changed:
                log.warning(
                    "resuming with changed settings, the run is no longer exact: %s", "; ".join(changed)
                )

    text_dir = os.path.join(tcfg.output, "text")
    if ckpt is not None:
        text_source, pretrained = ckpt.text_dir, False
    elif mcfg.text.model == TINY:
        if d.main and not os.path.isfile(os.path.join(text_dir, "config.json")):
            build_tiny_text_model(corpus_texts(shards), text_dir, mcfg.text)
        if d.world > 1:
            dist.barrier()
        text_source, pretrained = text_dir, False
    else:
        require_local_model(mcfg.text.model)  # before the hub's retries, not after
        text_source, pretrained = mcfg.text.model, True
    model, tokenizer = build_model(mcfg, text_source, pretrained=pretrained, seed=tcfg.seed, offline=offline)
    if d.main and not os.path.isfile(os.path.join(text_dir, "config.json")):
        save_text_files(tokenizer, model.text, text_dir)  # every checkpoint carries a copy
    model.to(device)
    optimizer = torch.optim.AdamW(
        param_groups(model, tcfg.weight_decay), lr=tcfg.lr, betas=tcfg.betas, eps=tcfg.eps
    )
    state = RunState()
    if ckpt is not None:
        load_weights(ckpt.path, model)
        saved = load_state(ckpt.path)
        if saved.get("version") != STATE_VERSION:
            raise ValueError(f"{ckpt.path}: state version {saved.get('version')} (expected {STATE_VERSION})")
        optimizer.load_state_dict(saved["optimizer"])
        state = RunState(**{k: saved["run"][k] for k in ("step", "epoch", "batch", "samples", "skipped")})
        torch.set_rng_state(saved["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in saved:
            torch.cuda.set_rng_state(saved["rng_cuda"], device)
        log.info(
            "resumed from %s at step %d (epoch %d, batch %d)", ckpt.path, state.step, state.epoch, state.batch
        )

    net: nn.Module = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    eval_shards: list[Shard] = []
    if tcfg.eval_split:
        try:
            eval_shards = list_shards(layout, tcfg.eval_split, tcfg.format)
        except DataError as e:
            log.warning("no evaluation: %s", e)

    logger = _Logger(
        os.path.join(tcfg.output, "train_log.jsonl") if d.main else None,
        echo if d.main else None,
        os.path.join(tcfg.output, TENSORBOARD_DIR) if d.main and tcfg.tensorboard else None,
    )
    n_params = sum(p.numel() for p in model.parameters())
    if d.main:
        logger(
            {"event": "start", "params": n_params, "steps": total, "steps_per_epoch": opt_per_epoch},
            f"training {mcfg.audio.encoder}-{mcfg.audio.size} + text '{mcfg.text.model}' "
            f"({n_params / 1e6:.2f} M params) on {device} x {d.world}, {total} steps "
            f"({opt_per_epoch} per epoch, batch {tcfg.batch_size} x {tcfg.grad_accum} x {d.world}), "
            f"precision "
            f"{'bf16' if autocast is not contextlib.nullcontext else 'fp32'}",
        )

    stop = total if stop_at_step is None else min(total, stop_at_step)
    report: EvalReport | None = None
    last_ckpt: str | None = None
    skipped = SkipCounts(state.skipped)
    t_run, run_samples = time.perf_counter(), 0
    t_win, win_samples, win_wait, win_loss, win_n = time.perf_counter(), 0, 0.0, 0.0, 0

    def save() -> str | None:
        state.skipped = dict(skipped)
        path = None
        if d.main:
            payload = {
                "version": STATE_VERSION,
                "optimizer": optimizer.state_dict(),
                "run": state.to_json(),
                "rng_cpu": torch.get_rng_state(),
            }
            if device.type == "cuda":
                payload["rng_cuda"] = torch.cuda.get_rng_state(device)
            path = save_checkpoint(
                checkpoint_dir(tcfg.output, state.step), model, mcfg, tcfg, payload, text_dir
            )
            prune_checkpoints(tcfg.output, tcfg.keep_checkpoints)
        if d.world > 1:
            dist.barrier()
        return path

    def run_eval() -> EvalReport | None:
        rep = None
        if d.main and eval_shards:
            rep = evaluate(
                model,
                tokenizer,
                eval_shards,
                device,
                split=tcfg.eval_split or "",
                max_length=mcfg.text.max_length,
                batch_size=tcfg.batch_size,
                workers=tcfg.workers,
                mel_mode=tcfg.mel,
                autocast=autocast,
                threads=tcfg.threads,  # already set for the run; recorded in the report
            )
            logger({"event": "eval", "step": state.step, **rep.to_json()}, format_report(rep))
        if d.world > 1:
            dist.barrier()
        return rep

    model.train()
    while state.step < stop:
        scfg = take(StreamConfig, tcfg, rank=d.rank, world=d.world)
        loader = train_loader(
            shards, scfg, state.epoch, micro_per_epoch, start=state.batch, pin_memory=device.type == "cuda"
        )
        t_wait = time.perf_counter()
        for batch in loader:
            win_wait += time.perf_counter() - t_wait
            if batch.index != state.batch:
                raise RuntimeError(f"data stream out of order: batch {batch.index}, expected {state.batch}")
            skipped.merge(batch.skipped)
            sync = (state.batch + 1) % tcfg.grad_accum == 0
            # net is DDP exactly when world > 1
            wrapped = isinstance(net, nn.parallel.DistributedDataParallel)
            no_sync = net.no_sync() if wrapped and not sync else contextlib.nullcontext()
            with no_sync:
                if len(batch):
                    views = batch.views(device)
                    ids, mask = tokenize(tokenizer, [c[0] for c in batch.captions], mcfg.text.max_length)
                    with autocast():
                        a, t, scale = net(views, batch.longer.to(device), ids.to(device), mask.to(device))
                    loss = clip_loss(a, t, scale)
                else:
                    loss = _zero_loss(model)
                (loss / tcfg.grad_accum).backward()
            state.batch += 1
            state.samples += len(batch)
            win_samples += len(batch)
            run_samples += len(batch)
            win_loss += float(loss.detach())
            win_n += 1
            if not sync:
                t_wait = time.perf_counter()
                continue
            lr = lr_at(state.step, tcfg, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if tcfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            model.clamp_logit_scale()
            state.step += 1
            if state.step % tcfg.log_every == 0 or state.step == stop:
                dt = time.perf_counter() - t_win
                row = {
                    "event": "train",
                    "step": state.step,
                    "epoch": state.epoch,
                    "loss": win_loss / max(1, win_n),
                    "lr": lr,
                    "logit_scale": float(model.logit_scale.detach().exp()),
                    "samples_per_s": win_samples * d.world / dt if dt > 0 else 0.0,
                    "data_wait": win_wait / dt if dt > 0 else 0.0,
                    "skipped": dict(skipped),
                }
                if d.main:
                    logger(
                        row,
                        f"step {state.step}/{total} epoch {state.epoch} loss {row['loss']:.4f} lr {lr:.2e} "
                        f"scale {row['logit_scale']:.1f} {row['samples_per_s']:.1f} samples/s "
                        f"(data wait {100 * row['data_wait']:.0f}%)"
                        + (f" skipped {dict(skipped)}" if skipped else ""),
                    )
                t_win, win_samples, win_wait, win_loss, win_n = time.perf_counter(), 0, 0.0, 0.0, 0
            if tcfg.save_every and state.step % tcfg.save_every == 0 and state.step < stop:
                last_ckpt = save()
            if state.step >= stop:
                break
            t_wait = time.perf_counter()
        del loader
        if state.batch >= micro_per_epoch:
            state.epoch += 1
            state.batch = 0
            if tcfg.eval_every_epochs and state.epoch % tcfg.eval_every_epochs == 0 and state.step < stop:
                report = run_eval()

    last_ckpt = save()
    if state.step >= total or report is None:
        report = run_eval()
    wall = time.perf_counter() - t_run
    logger.close()  # (an exception leaves it open: every row was flushed as it was written)
    return TrainResult(
        model=model,
        state=state,
        checkpoint=last_ckpt,
        report=report,
        samples_per_second=run_samples * d.world / wall if wall > 0 else 0.0,
        log=logger.rows,
    )


def load_for_eval(path: str, device: torch.device | str = "cpu") -> tuple[CLAP, Any, ModelConfig]:
    """A trained model from a checkpoint folder (or a run folder: its newest checkpoint), offline."""
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {path}")
    ckpt = read_checkpoint(found)
    model, tokenizer = build_model(ckpt.model, ckpt.text_dir, pretrained=False, seed=0, offline=True)
    load_weights(ckpt.path, model)
    model.to(device).eval()
    return model, tokenizer, ckpt.model
