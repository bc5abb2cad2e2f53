"""Retrieval and zero-shot evaluation with LAION-CLAP's definitions (get_metrics in its training/train.py).

With one caption per clip: the rank ``r`` (0-based) of the paired item in the similarity ranking;
R@k = mean(r < k), mAP@10 = mean(1/(r+1) if r < 10 else 0), in both directions.

When every clip carries five captions (Clotho, AudioCaps), the five-caption protocol: text->audio
ranks each of the 5N captions against the N clips; audio->text R@k uses the best of the five ranks,
and mAP@10 is the average precision of the five captions cut at rank 10 (sum over the captions
ranked under 10, taken in rank order, of (hits so far) / (rank + 1), divided by 5). LAION's code
describes this sort but leaves it out (it visits the captions in caption order); we sort, as the
definition and the original implementation (Mei et al.) do.

Equal scores (identical captions give identical text embeddings) are ordered by a fixed random
permutation, so a tie counts neither for nor against a model, and a collapsed model scores chance.

Agreement: similarities and ranks are computed in float64 with a fixed tie-break, but the embeddings
come from the model's float32 (or bf16) kernels, whose summation order on a CPU depends on the number
of torch threads and on the batch shapes (measured on the micro CNN: embeddings differ by up to 9e-8
between 1, 2 and 4 threads and between batches of 4, 8 and 64), and such a difference can move a
near-tie across a rank and R@k or mAP@10 by a clip. So an evaluation is reproducible bit for bit given
its settings (threads, batch size, loader workers, mel mode, precision), which the report records;
``clapcorpus eval`` takes them from the checkpoint's training run unless told otherwise, so that it
prints exactly what the evaluation at the end of ``clapcorpus train`` printed.

Zero-shot: every label phrase of the split becomes ``This is a sound of {label}.``; a clip is right
when the best-scoring prompt is one of its labels. Chance: 1/C for C classes (single-label clips).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from clap_corpus.trainer.data import EVAL_CAPTIONS, Batch, Shard, SkipCounts, eval_loader
from clap_corpus.trainer.model import CLAP
from clap_corpus.trainer.text import tokenize
from clap_corpus.transforms.captions import ZERO_SHOT_PROMPT, label_phrase

KS = (1, 5, 10)


@dataclass
class Embedded:
    keys: list[str]
    audio: torch.Tensor  # [N, D], L2-normalised, on the CPU
    captions: list[list[str]]
    labels: list[list[str]]
    skipped: SkipCounts = field(default_factory=SkipCounts)


@dataclass
class EvalReport:
    split: str
    clips: int
    captions_per_clip: int
    metrics: dict[str, float]
    chance: dict[str, float]
    classes: list[str]
    skipped: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)  # what the numbers depend on (module doc)

    def to_json(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "clips": self.clips,
            "captions_per_clip": self.captions_per_clip,
            "metrics": self.metrics,
            "chance": self.chance,
            "classes": self.classes,
            "skipped": self.skipped,
            "settings": self.settings,
        }


# ------------------------------------------------------------------------------------------------
# Metrics on embeddings (pure functions)


def ranks_of(scores: torch.Tensor, truth: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
    """0-based rank of column ``truth[q]`` in row ``q`` of ``scores`` (higher first).

    Ties are ordered by ``tiebreak`` (a permutation of the columns), lower first.
    """
    s = scores.gather(1, truth[:, None])
    tb = tiebreak[truth][:, None]
    ahead = (scores > s) | ((scores == s) & (tiebreak[None, :] < tb))
    return ahead.sum(dim=1)


def _recall_map(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    r = ranks.double()
    out = {f"{prefix}_R@{k}": float((r < k).double().mean()) for k in KS}
    out[f"{prefix}_mAP@10"] = float(torch.where(r < 10, 1.0 / (r + 1), torch.zeros_like(r)).mean())
    out[f"{prefix}_mean_rank"] = float(r.mean() + 1)
    out[f"{prefix}_median_rank"] = float(math.floor(r.median().item()) + 1)
    return out


def retrieval_metrics(
    audio: torch.Tensor, text: torch.Tensor, per_clip: int, seed: int = 0
) -> dict[str, float]:
    """``audio`` [N, D]; ``text`` [N * per_clip, D] with clip i's captions at rows i*per_clip + j."""
    n = audio.shape[0]
    if text.shape[0] != n * per_clip:
        raise ValueError(f"{text.shape[0]} captions for {n} clips x {per_clip}")
    g = torch.Generator().manual_seed(seed)
    sim = audio.double() @ text.double().t()  # [N, N*K]
    # text -> audio: every caption is a query over the N clips
    t2a = ranks_of(sim.t(), torch.arange(n).repeat_interleave(per_clip), torch.randperm(n, generator=g))
    out = _recall_map(t2a, "text_to_audio")
    tiebreak = torch.randperm(n * per_clip, generator=g)
    if per_clip == 1:
        out.update(_recall_map(ranks_of(sim, torch.arange(n), tiebreak), "audio_to_text"))
        return out
    # audio -> text, five-caption protocol: ranks of all of a clip's captions
    all_ranks = torch.stack(
        [ranks_of(sim, torch.arange(n) * per_clip + j, tiebreak) for j in range(per_clip)], dim=1
    )  # [N, K]
    best = all_ranks.min(dim=1).values
    out.update({k: v for k, v in _recall_map(best, "audio_to_text").items() if "mAP" not in k})
    ordered = all_ranks.sort(dim=1).values.double()
    hits = torch.arange(1, per_clip + 1, dtype=torch.float64)[None, :]
    ap = torch.where(ordered < 10, hits / (ordered + 1), torch.zeros_like(ordered)).sum(1) / per_clip
    out["audio_to_text_mAP@10"] = float(ap.mean())
    return out


def chance_levels(n: int, per_clip: int) -> dict[str, float]:
    """Expected metrics of a model whose rankings are uniformly random."""
    out = {f"text_to_audio_R@{k}": min(k, n) / n for k in KS}
    out["text_to_audio_mAP@10"] = sum(1.0 / (r + 1) for r in range(min(10, n))) / n
    m, kk = n * per_clip, per_clip
    for k in KS:
        # at least one of the clip's kk captions among the first k of m
        miss = math.comb(m - kk, k) / math.comb(m, k) if k <= m - kk else 0.0
        out[f"audio_to_text_R@{k}"] = 1.0 - miss
    # A relevant caption at position r: chance kk/m; the others then fill positions < r at rate
    # (kk-1)/(m-1) each, so the expected precision there is (1 + (kk-1) r / (m-1)) / (r+1).
    ap = sum((kk / m) * (1 + ((kk - 1) * r / (m - 1) if m > 1 else 0)) / (r + 1) for r in range(min(10, m)))
    out["audio_to_text_mAP@10"] = ap / kk
    return out


def zero_shot_accuracy(
    audio: torch.Tensor, labels: list[list[str]], class_text: torch.Tensor, classes: list[str]
) -> tuple[float, float, int]:
    """(accuracy, chance, clips scored) over the clips that carry at least one known label."""
    index = {c: i for i, c in enumerate(classes)}
    rows, truth = [], []
    for i, ls in enumerate(labels):
        mine = {index[p] for p in (label_phrase(x) for x in ls) if p in index}
        if mine:
            rows.append(i)
            truth.append(mine)
    if not rows:
        return float("nan"), float("nan"), 0
    pred = (audio[rows].double() @ class_text.double().t()).argmax(dim=1).tolist()
    acc = sum(p in t for p, t in zip(pred, truth, strict=True)) / len(rows)
    chance = sum(len(t) for t in truth) / (len(rows) * len(classes))
    return acc, chance, len(rows)


def zero_shot_classes(labels: list[list[str]]) -> list[str]:
    return sorted({p for ls in labels for p in (label_phrase(x) for x in ls) if p})


# ------------------------------------------------------------------------------------------------
# Running the model


@torch.no_grad()
def embed_texts(
    model: CLAP, tokenizer: Any, texts: list[str], device: torch.device, max_length: int, batch: int = 256
) -> torch.Tensor:
    out = []
    for i in range(0, len(texts), batch):
        ids, mask = tokenize(tokenizer, texts[i : i + batch], max_length)
        out.append(model.encode_text(ids.to(device), mask.to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, model.cfg.joint_dim))


@torch.no_grad()
def embed_split(
    model: CLAP,
    shards: list[Shard],
    device: torch.device,
    *,
    batch_size: int = 64,
    workers: int = 2,
    mel_mode: str = "auto",
    autocast: Callable[[], Any] | None = None,
) -> Embedded:
    """Audio embeddings of every readable sample of the shards, sorted by key."""
    keys, feats, captions, labels = [], [], [], []
    skipped = SkipCounts()
    batch: Batch
    for batch in eval_loader(shards, batch_size, workers, mel_mode):
        skipped.merge(batch.skipped)
        if not len(batch):
            continue
        views = batch.views(device)
        with autocast() if autocast else contextlib.nullcontext():
            a = model.encode_audio(views, batch.longer.to(device))
        feats.append(a.float().cpu())
        keys += batch.keys
        captions += batch.captions
        labels += batch.labels
    if not keys:
        return Embedded([], torch.zeros((0, model.cfg.joint_dim)), [], [], skipped)
    audio = torch.cat(feats)
    order = sorted(range(len(keys)), key=keys.__getitem__)
    return Embedded(
        [keys[i] for i in order],
        audio[order],
        [captions[i] for i in order],
        [labels[i] for i in order],
        skipped,
    )


def evaluate(
    model: CLAP,
    tokenizer: Any,
    shards: list[Shard],
    device: torch.device,
    *,
    split: str = "valid",
    max_length: int = 77,
    batch_size: int = 64,
    workers: int = 2,
    mel_mode: str = "auto",
    autocast: Callable[[], Any] | None = None,
    threads: int | None = None,
) -> EvalReport:
    """Retrieval and zero-shot metrics of ``model`` on ``shards``; ``threads``: torch CPU threads for the
    evaluation (None: as the process has them), restored afterwards."""
    was_training = model.training
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    settings = {
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "workers": workers,
        "mel": mel_mode,
        "precision": "fp32" if autocast is None or autocast is contextlib.nullcontext else "bf16",
    }
    model.eval()
    try:
        emb = embed_split(
            model,
            shards,
            device,
            batch_size=batch_size,
            workers=workers,
            mel_mode=mel_mode,
            autocast=autocast,
        )
        n = len(emb.keys)
        if n == 0:
            return EvalReport(split, 0, 0, {}, {}, [], dict(emb.skipped), settings)
        # Five-caption protocol only when every clip has five; otherwise each clip's first caption.
        per_clip = EVAL_CAPTIONS if all(len(c) >= EVAL_CAPTIONS for c in emb.captions) else 1
        texts = [t for c in emb.captions for t in c[:per_clip]]
        unique = sorted(set(texts))
        table = embed_texts(model, tokenizer, unique, device, max_length)
        pos = {t: i for i, t in enumerate(unique)}
        text = table[[pos[t] for t in texts]]
        metrics = retrieval_metrics(emb.audio, text, per_clip)
        chance = chance_levels(n, per_clip)
        classes = zero_shot_classes(emb.labels)
        if classes:
            prompts = [ZERO_SHOT_PROMPT.format(label=c) for c in classes]
            class_text = embed_texts(model, tokenizer, prompts, device, max_length)
            acc, acc_chance, scored = zero_shot_accuracy(emb.audio, emb.labels, class_text, classes)
            metrics["zero_shot_accuracy"] = acc
            metrics["zero_shot_clips"] = scored
            chance["zero_shot_accuracy"] = acc_chance
        return EvalReport(split, n, per_clip, metrics, chance, classes, dict(emb.skipped), settings)
    finally:
        model.train(was_training)
        torch.set_num_threads(before)


def format_report(report: EvalReport) -> str:
    if report.clips == 0:
        return f"evaluation on '{report.split}': no readable clips"
    protocol = (
        "five-caption protocol" if report.captions_per_clip == EVAL_CAPTIONS else "first caption of each clip"
    )
    lines = [f"evaluation on '{report.split}': {report.clips} clips, {protocol}"]
    lines.append(f"  {'':<16}{'R@1':>9}{'R@5':>9}{'R@10':>9}{'mAP@10':>9}")
    for direction, name in (("text_to_audio", "text->audio"), ("audio_to_text", "audio->text")):
        for label, src in ((name, report.metrics), ("  chance", report.chance)):
            cells = [f"{100 * src[f'{direction}_R@{k}']:>8.1f}%" for k in KS]
            cells.append(f"{100 * src[f'{direction}_mAP@10']:>8.1f}%")
            lines.append(f"  {label:<16}{''.join(cells)}")
    if "zero_shot_accuracy" in report.metrics:
        lines.append(
            f"  zero-shot accuracy {100 * report.metrics['zero_shot_accuracy']:.1f}% "
            f"(chance {100 * report.chance['zero_shot_accuracy']:.1f}%, {len(report.classes)} classes, "
            f'{int(report.metrics["zero_shot_clips"])} clips; prompt "{ZERO_SHOT_PROMPT}")'
        )
    else:
        lines.append("  zero-shot: no labels in this split")
    if report.settings:
        st = report.settings
        lines.append(
            f"  settings: threads {st['threads']}, batch {st['batch_size']}, workers {st['workers']}, "
            f"mel {st['mel']}, {st['precision']}"
        )
    if report.skipped:
        lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())))
    return "\n".join(lines)
