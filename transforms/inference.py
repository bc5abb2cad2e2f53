"""What the two models behind RunInference (K2C's captioner, CLAP's embedder) share, without Beam; the
trainer's on-device views batch their clips by length as these models batch their inputs.

Both handlers import this; their ``ModelHandler`` subclasses stay in ``k2c/handler.py`` and
``scoring/handler.py``, the only modules of each slice that may import Apache Beam (no module both
slices may import is allowed Beam, and transforms/ stays Beam-free for the trainer).
"""

from __future__ import annotations

from collections.abc import Iterable


def pick_device(device: str) -> str:
    """``auto``: CUDA where the worker has it, else the CPU; any other name as it is."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def length_groups(lengths: Iterable[int]) -> list[list[int]]:
    """The indices of ``lengths`` grouped by length, shortest first, each group in input order.

    Inputs of one length stack into one tensor with no padding: padding changes a model's
    floating-point sums (attention over pad positions, a near-tie between two beams), so an output
    would depend on what else Beam happened to batch with its input."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        groups.setdefault(n, []).append(i)
    return [groups[n] for n in sorted(groups)]


def load_error(e: BaseException) -> str:
    """A model's load failure in one line for the message that says how to provide the model: the
    exception's type and the first line of its message (the rest is a traceback's worth of hub detail)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"
