"""The run report's PNG plots, drawn from report.json's data with matplotlib's Agg canvas directly: no
display, no pyplot global state."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Mapping
from typing import Any


def bin_labels(edges: list[float], *, counts_of_integers: bool = False) -> list[str]:
    """'a-b' for the bin [a, b); a bin that holds a single integer is named by it."""
    out = [
        f"{a:g}" if counts_of_integers and b - a == 1 else f"{a:g}-{b:g}"
        for a, b in itertools.pairwise(edges)
    ]
    return [*out, f"{edges[-1]:g}+"]


def _figure(width: float, height: float, *, left_in: float = 0.7, bottom_in: float = 0.55):
    """A figure with fixed margins in inches: layout engines cost more than drawing these plots."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(
        left=left_in / width, right=1 - 0.25 / width, bottom=bottom_in / height, top=1 - 0.4 / height
    )
    return fig


def _label_inches(labels: Iterable[str], fontsize: float = 8) -> float:
    """Room for tick labels: about 0.6 em per character."""
    return 0.2 + max((len(s) for s in labels), default=1) * 0.6 * fontsize / 72


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # No "Software" stamp: the same data always gives the same bytes.
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _histogram_png(
    hist: Mapping[str, Any], title: str, xlabel: str, ylabel: str, *, integers: bool = False
) -> bytes:
    counts = list(hist["counts"])
    labels = bin_labels(list(hist["edges"]), counts_of_integers=integers)
    # Trailing empty bins say nothing; keep at least up to the last non-empty one.
    last = max((i for i, c in enumerate(counts) if c), default=len(counts) - 1)
    counts, labels = counts[: last + 1], labels[: last + 1]
    fig = _figure(max(6.0, 0.42 * len(counts) + 1.5), 3.8, bottom_in=0.45 + 0.7 * _label_inches(labels))
    ax = fig.subplots()
    bars = ax.bar(range(len(counts)), counts, color="#4472c4")
    ax.bar_label(bars, labels=[compact(c) if c else "" for c in counts], fontsize=7)
    ax.set_xticks(range(len(counts)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    _plain_ticks(ax.yaxis, integer=True)
    ax.margins(y=0.12)
    return _png(fig)


def _barh_png(values: Mapping[str, float], title: str, xlabel: str, fmt: str = "{:g}") -> bytes:
    names = list(values)
    fig = _figure(7.0, max(1.8, 0.3 * len(names) + 1.2), left_in=_label_inches(names), bottom_in=0.5)
    ax = fig.subplots()
    bars = ax.barh(range(len(names)), [values[n] for n in names], color="#4472c4")
    ax.bar_label(bars, labels=[fmt.format(values[n]) for n in names], fontsize=8, padding=2)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    _plain_ticks(ax.xaxis)
    ax.margins(x=0.15)
    return _png(fig)


def _captions_png(kinds: Mapping[str, int], k2c: int, samples: int) -> bytes:
    """Caption kinds per sample, and the share of samples with a keyword-to-caption (K2C) caption."""
    names = list(kinds)
    fig = _figure(9.0, max(1.8, 0.3 * max(len(names), 2) + 1.2), left_in=_label_inches(names), bottom_in=0.5)
    left, right = fig.subplots(1, 2, gridspec_kw={"wspace": 0.6})
    bars = left.barh(range(len(names)), [kinds[n] for n in names], color="#4472c4")
    left.bar_label(bars, labels=[f"{kinds[n]:,}" for n in names], fontsize=8, padding=2)
    left.set_yticks(range(len(names)), names, fontsize=8)
    left.invert_yaxis()
    left.set_title("caption kind per sample")
    left.set_xlabel("samples")
    left.margins(x=0.2)
    share = [k2c, max(0, samples - k2c)]
    bars = right.barh([0, 1], share, color=["#ed7d31", "#a5a5a5"])
    right.bar_label(
        bars, labels=[f"{n:,} ({100 * n / samples:.0f}%)" if samples else "0" for n in share], fontsize=8
    )
    right.set_yticks([0, 1], ["K2C caption", "no K2C caption"], fontsize=8)
    right.invert_yaxis()
    right.set_title("keyword-to-caption (K2C) share")
    right.set_xlabel("samples")
    right.margins(x=0.35)
    return _png(fig)


def compact(x: float) -> str:
    """1234567 -> '1.23M', 900000 -> '900k', 12 -> '12', 0.03 -> '0.03'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def _plain_ticks(axis, *, integer: bool = False) -> None:
    """Short tick labels (1.5M, 800k): no '1e6' offset text, no labels running into each other."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=5, integer=integer))
    axis.set_major_formatter(FuncFormatter(lambda x, _: compact(x)))


def _sources_png(sources: Mapping[str, Mapping[str, Any]]) -> bytes:
    names = list(sources)
    fig = _figure(9.0, max(1.8, 0.3 * len(names) + 1.2), left_in=_label_inches(names), bottom_in=0.35)
    left, right = fig.subplots(1, 2, sharey=True)
    for ax, key, title, fmt in (
        (left, "samples", "samples per source", "{:,}"),
        (right, "hours", "audio hours per source", "{:,.2f}"),
    ):
        vals = [sources[n][key] for n in names]
        bars = ax.barh(range(len(names)), vals, color="#4472c4")
        ax.bar_label(bars, labels=[fmt.format(v) for v in vals], fontsize=8, padding=2)
        ax.set_title(title)
        ax.margins(x=0.2)
        _plain_ticks(ax.xaxis)
    left.set_yticks(range(len(names)), names, fontsize=8)
    left.invert_yaxis()
    return _png(fig)


def render_plots(report: Mapping[str, Any]) -> dict[str, bytes]:
    """File name -> PNG bytes; a plot with nothing to show is left out."""
    plots: dict[str, bytes] = {}
    if report["sources"]:
        plots["sources.png"] = _sources_png(report["sources"])
    if any(report["duration_histogram"]["counts"]):
        plots["durations.png"] = _histogram_png(
            report["duration_histogram"], "clip durations", "seconds", "samples"
        )
    if any(report["caption_length_histogram"]["counts"]):
        plots["caption_lengths.png"] = _histogram_png(
            report["caption_length_histogram"],
            "caption lengths",
            "words per caption",
            "captions",
            integers=True,
        )
    if report["caption_kinds"]:
        plots["caption_kinds.png"] = _captions_png(
            report["caption_kinds"], report["k2c"]["captions"], report["totals"]["samples"]
        )
    if report["rejects_by_code"]:
        plots["rejects.png"] = _barh_png(report["rejects_by_code"], "rejects by reason", "inputs")
    return plots


# -- HTML --------------------------------------------------------------------------------------
