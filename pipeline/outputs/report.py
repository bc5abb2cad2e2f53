"""The run report: ``<out>/report/`` with report.json, index.html and PNG plots.

Built from ``summary.json`` alone (the shard stats are aggregated into it by the graph's finalize
step, pipeline/outputs/distributions.py), so a report costs a few milliseconds even for millions of
samples, and ``clapcorpus report --output DIR`` can redraw it for a finished run (a Dataflow job
whose launcher was not kept waiting, for instance). Plots use matplotlib's Agg canvas directly:
no display, no pyplot global state.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import FLAC, Layout, member_name
from clap_corpus.core.rejects import Code
from clap_corpus.pipeline.outputs.distributions import INPUT_COUNTERS, aggregate_distributions
from clap_corpus.pipeline.outputs.summary import COVERAGE_HEADER, coverage_row
from clap_corpus.pipeline.outputs.summary_model import Coverage, RunSummary
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_member
from clap_corpus.transforms.shards import (
    LEVEL_EDGES_DBFS,
)

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_HTML = "index.html"


def _empty_distributions() -> dict[str, Any]:
    return aggregate_distributions([])


def _empty_level() -> dict[str, Any]:
    return {"edges": list(LEVEL_EDGES_DBFS), "counts": [0] * len(LEVEL_EDGES_DBFS)}


def build_report(summary: RunSummary) -> dict[str, Any]:
    """report.json: everything the page shows, as data."""
    dist = summary.distributions or _empty_distributions()
    samples, hours, wall = summary.samples, summary.hours, summary.wall_seconds
    stages = dict(summary.stages)
    licenses = dist.get("licenses_by_source", {})
    sources = {
        name: {
            "inputs": s.inputs,
            "samples": s.samples,
            "rejects": s.rejects,
            "hours": s.hours,
            "expected": s.expected,
            "licenses": licenses.get(name, {}),
            # the source's reading notes, where it has them, as summary.json has them
            **s.model_dump(mode="json", exclude_unset=True, include={"coverage", "join", "split_map_unused"}),
        }
        for name, s in summary.sources.items()
    }
    k2c = summary.k2c_captions
    throughput: dict[str, Any] = {
        "wall_seconds": wall,
        "shards_built": dist.get("shards_built", 0),
        "shards_reused": dist.get("shards_reused", 0),
        "shard_seconds": dist.get("shard_seconds", 0.0),
    }
    if wall:
        throughput["samples_per_second"] = round(samples / wall, 3)
        throughput["audio_hours_per_wall_hour"] = round(hours / (wall / 3600.0), 3)
    if dist.get("shard_seconds"):
        # Per worker-second spent inside shard writers (decode, views, FLAC, writing): the number
        # that says how many cores a corpus of a given size needs, whatever the runner.
        throughput["samples_per_shard_second"] = round(samples / dist["shard_seconds"], 3)
    return {
        "corpus": summary.corpus,
        "output": summary.output,
        "spec": summary.spec,
        "spec_fingerprint": summary.spec_fingerprint,
        "totals": {
            "inputs": summary.inputs,
            "samples": samples,
            "rejects": summary.rejects,
            "hours": hours,
            "truncated": summary.truncated,
            "incomplete": summary.incomplete,
            "silent": summary.silent,
            "accounting_ok": summary.accounting_ok,
            "tar_bytes": dist.get("tar_bytes", 0),
            "parquet_bytes": dist.get("parquet_bytes", 0),
        },
        "sources": sources,
        "splits": {name: split.to_json_dict() for name, split in summary.splits.items()},
        "duration_histogram": {"unit": "seconds", **dist["duration_s"]},
        "caption_length_histogram": {"unit": "words per caption", **dist["caption_words"]},
        # a summary from before the level histograms has none: empty ones then
        "peak_level_histogram": {"unit": "dBFS", **(dist.get("peak_dbfs") or _empty_level())},
        "rms_level_histogram": {"unit": "dBFS", **(dist.get("rms_dbfs") or _empty_level())},
        "caption_kinds": dist.get("caption_kinds", {}),
        "inputs": {name: dist.get(name, {}) for name in INPUT_COUNTERS},
        "examples": dist.get("examples", {}),
        "k2c": {
            "captions": k2c,
            "share_of_samples": round(k2c / samples, 6) if samples else 0.0,
            "skipped_short": summary.k2c_skipped_short,
            "stage": stages.get("k2c"),
        },
        "rejects_by_code": dict(summary.rejects_by_code),
        # Stages that drop records (duplicates, leakage guard) say how many under "removed".
        "removals": {
            name: doc["removed"] for name, doc in stages.items() if isinstance(doc.get("removed"), int)
        },
        "stages": stages,
        "throughput": throughput,
    }


# -- plots -------------------------------------------------------------------------------------


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


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(rows: list[list[Any]], header: list[str] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = "".join(
            f'<td class="{"n" if isinstance(c, int | float) else "t"}">{_fmt(c)}</td>' for c in row
        )
        out.append(f"<tr>{cells}</tr>")
    out.append("</table>")
    return "\n".join(out)


class _Raw(str):
    """Table cell HTML written by this module (a player, a link): not escaped."""


def _fmt(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return _e(value)


def flatten(doc: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts as dotted keys; lists longer than a few items summarised by their length."""
    if isinstance(doc, Mapping):
        out: list[tuple[str, Any]] = []
        for k, v in doc.items():
            out.extend(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(doc, list) and (len(doc) > 8 or any(isinstance(x, dict | list) for x in doc)):
        return [(prefix, f"[{len(doc)} items]")]
    if isinstance(doc, list):
        return [(prefix, ", ".join(map(str, doc)))]
    return [(prefix, doc)]


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; } th { background: #f3f3f3; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5em 0; }
.bad { color: #b00; font-weight: bold; } .ok { color: #070; }
.cols { display: flex; gap: 2em; flex-wrap: wrap; } audio { height: 2em; }
"""


def _level_table(peak: Mapping[str, Any], rms: Mapping[str, Any]) -> str:
    """Both level histograms in one table (a table, not a plot: two short columns of counts)."""
    labels = bin_labels(list(peak["edges"]))
    pairs = zip(labels, peak["counts"], rms["counts"], strict=True)
    rows = [[label, p, r] for label, p, r in pairs if p or r]
    return _table(rows, ["dBFS", "samples by peak", "samples by RMS"]) if rows else "<p>No samples.</p>"


def render_html(report: Mapping[str, Any], plots: Iterable[str]) -> str:
    plots = set(plots)
    t = report["totals"]
    acc = '<span class="ok">holds</span>' if t["accounting_ok"] else '<span class="bad">DOES NOT HOLD</span>'

    def img(name: str, alt: str) -> str:
        return f'<img src="{_e(name)}" alt="{_e(alt)}">' if name in plots else ""

    parts = [
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>",
        f"<title>{_e(report['corpus'])}: run report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Corpus <code>{_e(report['corpus'])}</code>: run report</h1>",
        f"<p>Output: <code>{_e(report['output'])}</code><br>Spec: <code>{_e(report['spec'])}</code> "
        f"(fingerprint <code>{_e(str(report['spec_fingerprint'])[:12])}</code>)</p>",
        "<h2>Totals</h2>",
        _table(
            [
                ["inputs", t["inputs"]],
                ["samples", t["samples"]],
                ["rejects", t["rejects"]],
                ["audio hours", t["hours"]],
                ["truncated samples", t["truncated"]],
                ["incomplete samples (kept)", t["incomplete"]],
                ["silent clips (rejected)", t["silent"]],
                ["WebDataset bytes", t["tar_bytes"]],
                ["Parquet bytes", t["parquet_bytes"]],
            ]
        ),
        f"<p>Accounting (inputs = samples + rejects): {acc}</p>",
        "<h2>Sources</h2>",
        _table(
            [
                [
                    name,
                    s["inputs"],
                    s["samples"],
                    s["rejects"],
                    s["hours"],
                    s["expected"],
                    "; ".join(f"{lic} ({n:,})" for lic, n in s["licenses"].items()),
                ]
                for name, s in report["sources"].items()
            ],
            ["source", "inputs", "samples", "rejects", "hours", "expected", "licenses (samples)"],
        ),
        img("sources.png", "samples and hours per source"),
        coverage_html(report),
        "<h2>Splits</h2>",
        _table(
            [
                [k, v["shards"], v["samples"], v["rejects"], v.get("hours")]
                for k, v in report["splits"].items()
            ],
            ["split", "shards", "samples", "rejects", "audio hours"],
        ),
        inputs_html(report["inputs"]),
        examples_html(report),
        "<h2>Durations</h2>",
        img("durations.png", "duration histogram"),
        "<h2>Levels</h2>",
        f"<p>Samples by peak and RMS level, in dBFS (0 is 16-bit full scale, -120 digital silence); "
        f"{t['silent']:,} silent clips were rejected, {t['incomplete']:,} incomplete ones kept.</p>",
        _level_table(report["peak_level_histogram"], report["rms_level_histogram"]),
        "<h2>Captions</h2>",
        img("caption_lengths.png", "caption length histogram"),
        _table([[k, v] for k, v in report["caption_kinds"].items()], ["caption kind", "samples"]),
        k2c_html(report["k2c"]),
        img("caption_kinds.png", "caption kinds"),
        "<h2>Rejects by reason</h2>",
        _table([[k, v] for k, v in report["rejects_by_code"].items()], ["code", "inputs"])
        if report["rejects_by_code"]
        else "<p>No rejects.</p>",
        img("rejects.png", "rejects by reason"),
        reject_examples_html(report.get("reject_examples") or {}),
        "<h2>Removals</h2>",
        _table([[k, v] for k, v in report["removals"].items()], ["stage", "samples removed"])
        if report["removals"]
        else "<p>No stage removed samples.</p>",
        cross_split_html(report),
        clap_html(report),
        "<h2>Stages</h2>",
    ]
    if report["stages"]:
        parts.append(
            "<p>What the record stages (keyword-to-caption, duplicates, leakage guard ...) reported.</p>"
        )
        for name, doc in report["stages"].items():
            if name == "k2c":
                continue  # said in words under Captions; the numbers are in report.json
            parts.append(f"<h3>{_e(name)}</h3>")
            parts.append(_table([[k, v] for k, v in flatten(doc)]))
    else:
        parts.append("<p>No record stage reported anything in this run.</p>")
    parts.append("<h2>Throughput</h2>")
    parts.append(_table([[k, v] for k, v in report["throughput"].items()]))
    parts.append("<p>Data: <a href='report.json'>report.json</a>.</p></body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def coverage_html(report: Mapping[str, Any]) -> str:
    # report.json's sources carry the summary's coverage as it is: read it through the same model
    rows = [
        coverage_row(name, Coverage.model_validate(s["coverage"]), s["expected"])
        for name, s in report["sources"].items()
        if s.get("coverage")
    ]
    if not rows:
        return ""
    return (
        "<h2>Coverage of the official lists</h2><p>Sources read from a mirror, against the list they are "
        "meant to cover (<code>options.wanted</code>); each missing row is a <code>not_in_mirror</code> "
        "reject.</p>" + _table(rows, COVERAGE_HEADER)
    )


def _player(clap: Mapping[str, Any], key: str) -> str:
    """A player for a clip the CLAP stage copied next to the report (a browser-playable excerpt,
    linked relatively, so the report plays wherever the folder goes), or '' if it has none."""
    seconds = (clap.get("excerpts") or {}).get(key)
    if seconds is None:
        return ""
    src = f"{clap.get('excerpt_dir', 'audio/clap')}/{key}.opus"
    return (
        f"<audio controls preload='metadata' src='{_e(src)}' data-key='{_e(key)}' "
        f"data-seconds='{seconds}'></audio>"
    )


def calibration_html(clap: Mapping[str, Any]) -> str:
    """What the run measured of the model before it removed anything, and what that allowed."""
    cal = clap.get("calibration") or {}
    if not cal:
        return ""
    parts = ["<h3>Calibration on this run's clips</h3>"]
    refused = clap.get("removal_refused") or {}
    if refused:
        withheld = clap.get("withheld") or {}
        parts.append(
            "<p class='bad'>Nothing was removed by "
            + ", ".join(f"<code>{_e(code)}</code>" for code in refused)
            + ": the model cannot tell the pairs apart on this data. "
            + " ".join(f"{_e(code)}: {_e(why)}." for code, why in refused.items())
            + (
                " These samples shipped although the threshold would have removed them: "
                + ", ".join(f"{n:,} {_e(code)}" for code, n in withheld.items())
                + "."
                if withheld
                else ""
            )
            + " Set <code>options.clap.trust_model: true</code> to remove anyway.</p>"
        )
    elif clap.get("trust_model"):
        parts.append("<p><code>trust_model: true</code>: removals happen whatever the calibration says.</p>")
    c, a = cal.get("captions", {}), cal.get("audio", {})
    rows = [
        ["clips measured", cal.get("clips")],
        ["own caption above another clip's (chance 0.5)", c.get("caption_wins")],
        ["  pairs of clips compared", c.get("pairs")],
        ["cosine of a clip and its copy: p05 / median", _pq(a.get("copies"), "p05", "median")],
        [
            "cosine of two different clips: median / p99 / max",
            _pq(a.get("different_clips"), "median", "p99", "max"),
        ],
        ["a copy closer than two different clips (chance 0.5)", a.get("separation")],
        ["suggested threshold (between the two)", cal.get("suggested_threshold")],
    ]
    parts.append(_table(rows))
    parts.append(f"<p>The copy: {_e(a.get('copy', ''))}.</p>")
    trows = [
        [
            name,
            d["threshold"],
            d["copies_at_or_above"],
            d["different_clips_at_or_above"],
            "removes" if d["trusted"] or clap.get("trust_model") else "report only",
            d["why"],
        ]
        for name, d in (cal.get("thresholds") or {}).items()
    ]
    if trows:
        parts.append(
            _table(
                trows, ["threshold", "cosine", "copies at or above", "different clips at or above", "", "why"]
            )
        )
    return "\n".join(parts)


def _pq(q: Mapping[str, Any] | None, *names: str) -> str:
    return " / ".join(str(q.get(n)) for n in names) if q and q.get("n") else ""


def clap_html(report: Mapping[str, Any]) -> str:
    """CLAP scoring (options.clap): the calibration, score histograms per source, the lowest pairs,
    the closest cross-split pairs and the near-duplicate groups, each clip with a player."""
    clap = (report.get("stages") or {}).get("clap")
    if not clap:
        return ""
    edges = clap.get("score_edges", [])
    parts = ["<h2>CLAP scores</h2>", f"<p>Model <code>{_e(clap['model'])}</code> ({_e(clap['kind'])}).</p>"]
    parts.append(calibration_html(clap))
    for source, s in clap.get("sources", {}).items():
        hist = [[f">= {e}", n] for e, n in zip(edges, s["score_hist"], strict=False) if n]
        parts.append(f"<h3>{_e(source)}: {s['scored']} scored, mean {s['mean_score']}</h3>")
        parts.append(_table(hist, ["best-caption score", "samples"]))
    rows = [
        [p["score"], p["key"], p["split"], p["caption"], _Raw(_player(clap, p["key"]))]
        for p in clap.get("lowest_pairs", [])
    ]
    parts += ["<h3>Lowest-scoring pairs</h3>", _table(rows, ["score", "key", "split", "caption", "audio"])]
    rows = [
        [
            p["similarity"],
            "removed" if p["removed"] else "withheld" if p.get("withheld") else "",
            p["train"]["key"],
            _Raw(_player(clap, p["train"]["key"])),
            f"{p['heldout']['key']} ({p['heldout']['source']}/{p['heldout']['split']})",
            _Raw(_player(clap, p["heldout"]["key"])),
            p["train"]["caption"],
        ]
        for p in clap.get("closest_cross_split_pairs", [])
    ]
    parts += ["<h3>Closest train / held-out pairs</h3>"]
    parts.append(
        _table(rows, ["cosine", "", "train", "train audio", "held out", "held-out audio", "train caption"])
    )
    near = clap.get("near_duplicates")
    if near:
        search = near.get("search") or {}
        how = ", ".join(f"{k} {v}" for k, v in search.items())
        parts.append(
            f"<h3>Near-duplicate groups</h3><p>{near['groups']:,} groups of samples of different sources at "
            f"cosine >= {near['threshold']} ({near['samples_in_groups']:,} samples, {near['removed']:,} "
            f"removed; search: {_e(how)}); all in duplicates.jsonl.</p>"
        )
        rows = []
        for i, g in enumerate(near.get("listed", []), 1):
            for m in g["samples"]:
                rows.append(
                    [
                        i,
                        g["similarity"],
                        m["key"],
                        f"{m['source']}/{m['split']}",
                        "kept" if m["kept"] else "removed",
                        _Raw(_player(clap, m["key"])),
                    ]
                )
        parts.append(_table(rows, ["group", "cosine", "key", "source/split", "", "audio"]))
    pairs = clap.get("caption_overlap_pairs") or []
    if pairs:
        rows = [
            [
                p["caption"],
                p["train"]["key"],
                _Raw(_player(clap, p["train"]["key"])),
                p["heldout"]["key"],
                _Raw(_player(clap, p["heldout"]["key"])),
            ]
            for p in pairs
        ]
        parts.append(
            f"<h3>Train captions a held-out sample has too</h3><p>{clap.get('caption_overlaps', 0):,} "
            "(listed, not removed).</p>"
        )
        parts.append(_table(rows, ["caption", "train", "train audio", "held out", "held-out audio"]))
    return "\n".join(p for p in parts if p)


def cross_split_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    """One row per listed group of identical audio in several splits: splits, copies, removed."""
    cross = (report.get("stages") or {}).get("duplicates", {}).get("cross_split") or {}
    rows = []
    for g in cross.get("listed", []):
        copies = "; ".join(
            f"{m['key']} ({m['source']}/{m['split']}{'' if m['kept'] else ', removed'})" for m in g["samples"]
        )
        rows.append([", ".join(g["splits"]), copies, g["removed"]])
    return rows


def cross_split_html(report: Mapping[str, Any]) -> str:
    cross = (report.get("stages") or {}).get("duplicates", {}).get("cross_split")
    if not cross:
        return ""
    head = (
        "<h2>Duplicates across splits</h2>"
        f"<p>{cross['groups']} groups of identical decoded audio sit in more than one split "
        f"(mode <code>{_e(cross['mode'])}</code>); {cross['train_copies_removed']} train copies removed "
        f"(reject <code>{Code.EVAL_OVERLAP_AUDIO}</code>).</p>"
    )
    rows = cross_split_rows(report)
    if not rows:
        return head
    more = cross["groups"] - len(rows)
    tail = f"<p>{more} more groups in duplicates.jsonl.</p>" if more > 0 else ""
    return head + _table(rows, ["splits", "copies (key, source/split)", "removed"]) + tail


# -- what a person looks at first: inputs, examples, K2C in words, example rejects ----------------

REJECT_EXAMPLES_PER_CODE = 3
# Reading reject files for examples stops after this many bytes: a run with millions of rejects
# must not make its report slow; the codes not reached by then just show no example.
REJECT_EXAMPLE_READ_BYTES = 8 * 1024 * 1024
EXAMPLE_AUDIO_DIR = "audio"


def reject_files(layout: Layout) -> list[str]:
    """Every reject file of the run: before sharding (per source), then per shard, in name order."""
    root = storage.join(layout.root, "rejects")
    return sorted(storage.match(storage.join(root, "manifest", "*.jsonl"))) + sorted(
        storage.match(storage.join(root, "shards", "*", "*.jsonl"))
    )


def reject_examples(layout: Layout, rejects_by_code: Mapping[str, int]) -> dict[str, list[dict[str, Any]]]:
    """A few rejects per code, each with the reject file it came from (relative to the output)."""
    wanted = {code for code, n in rejects_by_code.items() if n}
    found: dict[str, list[dict[str, Any]]] = {}
    read = 0
    for path in reject_files(layout):
        if not wanted or read > REJECT_EXAMPLE_READ_BYTES:
            break
        try:
            text = storage.read_text(path)
        except OSError:
            continue
        read += len(text)
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a damaged line (the files are written atomically, but can be edited): skip it
            code = doc.get("code")
            if code not in wanted:
                continue
            found.setdefault(code, []).append({**doc, "file": _relative(layout.root, path)})
            if len(found[code]) >= REJECT_EXAMPLES_PER_CODE:
                wanted.discard(code)
    return dict(sorted(found.items()))


def _relative(root: str, path: str) -> str:
    return path[len(root) :].lstrip("/") if path.startswith(root) else path


def write_example_audio(layout: Layout, examples: Mapping[str, list[Mapping[str, Any]]]) -> list[str]:
    """Copy the example samples' FLAC out of their tars into ``report/audio/``; return the keys copied.

    One seek per example (the shard writer recorded where the FLAC member lies), so a report over
    gigabyte shards on a bucket reads a few hundred kilobytes. A shard that is gone, or a run without
    tars, just leaves its examples without a player."""
    copied = []
    for found in examples.values():
        for e in found:
            if e.get("flac_offset") is None:
                continue
            ref = ArchiveMember(
                layout.tar_path(e["split"], e["shard"]), member_name(e["key"], FLAC), e["flac_offset"]
            )
            try:
                flac = read_member(ref)
            except OSError:
                log.warning("report: no audio for example %s", ref, exc_info=True)
                continue
            storage.write_bytes_atomic(layout.report_path(f"{EXAMPLE_AUDIO_DIR}/{e['key']}.flac"), flac)
            copied.append(e["key"])
    # An earlier run's examples that are not this run's go: the folder holds what the page shows.
    kept = {layout.report_path(f"{EXAMPLE_AUDIO_DIR}/{key}.flac") for key in copied}
    old = [p for p in storage.match(layout.report_path(f"{EXAMPLE_AUDIO_DIR}/*.flac")) if p not in kept]
    if old:
        storage.delete(old)
    return sorted(copied)


def prune_clap_excerpts(layout: Layout, clap: Mapping[str, Any] | None) -> None:
    """Remove the CLAP excerpts (written by the run) that this report does not play."""
    folder = (clap or {}).get("excerpt_dir", "audio/clap")
    kept = {layout.report_path(f"{folder}/{key}.opus") for key in (clap or {}).get("excerpts", {})}
    old = [p for p in storage.match(layout.report_path(f"{folder}/*.opus")) if p not in kept]
    if old:
        storage.delete(old)


_INPUT_TITLES = {
    "input_codecs": "codec",
    "input_channels": "channels",
    "input_sample_rates": "sample rate (Hz)",
}


def inputs_html(inputs: Mapping[str, Mapping[str, int]]) -> str:
    if not any(inputs.values()):
        return ""
    tables = "".join(
        "<div>" + _table([[k, v] for k, v in counts.items()], [_INPUT_TITLES[name], "samples"]) + "</div>"
        for name, counts in inputs.items()
        if counts
    )
    return (
        "<h2>Input files</h2><p>What the kept samples were before decoding to 48 kHz mono FLAC.</p>"
        f'<div class="cols">{tables}</div>'
    )


def examples_html(report: Mapping[str, Any]) -> str:
    examples = report.get("examples") or {}
    if not examples:
        return ""
    audio = set(report.get("example_audio") or [])
    parts = ["<h2>Examples</h2><p>The first samples of each source in key order, as they ship.</p>"]
    for source, found in examples.items():
        rows = []
        for e in found:
            player = (
                f'<audio controls preload="none" src="{EXAMPLE_AUDIO_DIR}/{_e(e["key"])}.flac"></audio>'
                if e["key"] in audio
                else ""
            )
            more = f" (+{e['captions'] - 1} more)" if e.get("captions", 1) > 1 else ""
            rows.append(
                [_Raw(player), f"{e['caption']}{more}", e.get("caption_kind"), e.get("duration"), e["key"]]
            )
        parts.append(f"<h3>{_e(source)}</h3>")
        parts.append(_table(rows, ["listen", "caption", "kind", "seconds", "key"]))
    return "\n".join(parts)


def k2c_html(k2c: Mapping[str, Any]) -> str:
    """The keyword-to-caption stage in sentences; its raw counters stay in report.json."""
    shipped = (
        f"<p>Keyword-to-caption (K2C): {k2c['captions']:,} samples ship a generated caption "
        f"({100 * k2c['share_of_samples']:.1f}% of samples).</p>"
    )
    st = k2c.get("stage")
    if not isinstance(st, Mapping) or "records" not in st:
        return shipped
    said = [
        f"Of {st['records']:,} records, {st.get('eligible', 0):,} had only labels or keywords and were "
        f"eligible; {st.get('not_template', 0):,} had a caption of their own"
        + (f" and {st['mode_off']:,} came from sources with K2C off" if st.get("mode_off") else "")
        + "."
    ]
    if st.get("eligible"):
        said.append(
            f"The model <code>{_e(st.get('model'))}</code> (preset <code>{_e(st.get('preset'))}</code>) "
            f"wrote {st.get('generated', 0):,} captions from {st.get('model_inputs', 0):,} distinct keyword "
            f"lists (identical lists are generated once: {st.get('dedup_ratio', 1):g} records per "
            "model input)" + (", then gender-debiased." if st.get("debias") else "; debiasing was off.")
        )
    fallbacks = st.get("fallbacks") or {}
    if fallbacks:
        said.append(
            "These kept their template caption instead: "
            + ", ".join(f"{n:,} {_e(reason.replace('_', ' '))}" for reason, n in fallbacks.items())
            + "."
        )
    if k2c.get("skipped_short"):
        said.append(
            f"{k2c['skipped_short']:,} decoded clips were shorter than {st.get('min_clip_seconds', 0):g} s "
            "and ship without their generated caption."
        )
    return shipped + "<p>" + " ".join(said) + "</p>"


def reject_examples_html(examples: Mapping[str, list[Mapping[str, Any]]]) -> str:
    if not examples:
        return ""
    rows = [
        [
            code,
            e.get("source"),
            e.get("source_id"),
            e.get("reason"),
            _Raw(f'<a href="../{_e(e["file"])}">{_e(e["file"])}</a>'),
        ]
        for code, found in examples.items()
        for e in found
    ]
    return "<h3>Example rejects</h3>" + _table(rows, ["code", "source", "id", "reason", "file"])


def write_report(summary: RunSummary) -> str:
    """Write ``<out>/report/`` (plots first, the page and report.json last); return the page's path."""
    layout = Layout(summary.output, summary.corpus)
    report = build_report(summary)
    report["reject_examples"] = reject_examples(layout, report["rejects_by_code"])
    report["example_audio"] = write_example_audio(layout, report["examples"])
    prune_clap_excerpts(layout, (report.get("stages") or {}).get("clap"))
    plots = render_plots(report)
    for name, data in plots.items():
        storage.write_bytes_atomic(layout.report_path(name), data)
    report["plots"] = sorted(plots)
    storage.write_bytes_atomic(layout.report_path(REPORT_HTML), render_html(report, plots).encode())
    storage.write_bytes_atomic(layout.report_path(REPORT_JSON), dumps_json(report) + b"\n")
    return layout.report_path(REPORT_HTML)


def write_run_report(summary: RunSummary) -> None:
    """Report and dataset card after a run; a failure here is logged, never fails the build."""
    from clap_corpus.pipeline.outputs.card import write_card

    for what, fn in (("run report", write_report), ("dataset card", write_card)):
        try:
            fn(summary)
        except Exception:
            log.exception("could not write the %s", what)
