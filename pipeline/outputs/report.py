"""The run report: ``<out>/report/`` with report.json, index.html and PNG plots.

Built from ``summary.json`` alone (the shard stats are aggregated into it by the graph's finalize
step, pipeline/outputs/distributions.py), so a report costs a few milliseconds even for millions of
samples, and ``clapcorpus report --output DIR`` can redraw it for a finished run (a Dataflow job
whose launcher was not kept waiting, for instance). This module builds report.json's data and writes
the folder; the plots (report_plots.py), the page (report_html.py) and the rejects and clips it shows
(report_examples.py) have their own modules.
"""

from __future__ import annotations

import logging
from typing import Any

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import Layout
from clap_corpus.pipeline.outputs.distributions import INPUT_COUNTERS, aggregate_distributions
from clap_corpus.pipeline.outputs.report_examples import (
    prune_clap_excerpts,
    reject_examples,
    write_example_audio,
)
from clap_corpus.pipeline.outputs.report_html import render_html
from clap_corpus.pipeline.outputs.report_plots import render_plots
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.transforms import storage
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
