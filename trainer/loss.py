"""CLAP's symmetric contrastive loss (CLIP's InfoNCE in both directions)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_features(audio: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's features, this rank's slice keeping its gradient (LAION's gather_with_grad=False).

    Gradients reach each rank's own rows only; DDP's averaging then gives the gradient of the loss
    over the global batch, up to a constant factor.
    """
    world, rank = dist.get_world_size(), dist.get_rank()
    # Batches may differ by a few rows (samples skipped as unreadable): all_gather needs one shape.
    n = torch.tensor([audio.shape[0]], device=audio.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    top = max(counts)
    out = []
    for x in (audio, text):
        padded = torch.zeros((top, *x.shape[1:]), dtype=x.dtype, device=x.device)
        padded[: x.shape[0]] = x.detach()
        parts = [torch.zeros_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        rows = [p[:c] for p, c in zip(parts, counts, strict=True)]
        rows[rank] = x
        out.append(torch.cat(rows))
    return out[0], out[1]


def clip_loss(audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of audio->text and text->audio cross-entropy over the batch's similarity matrix.

    ``audio`` and ``text`` are L2-normalised [B, D]; row i of each is a positive pair, every other
    row a negative. Under DDP the features of all ranks form the matrix.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        audio, text = gather_features(audio, text)
    logits = logit_scale * audio.float() @ text.float().t()
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
