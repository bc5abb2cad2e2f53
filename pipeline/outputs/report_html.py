"""The run report's page (``report/index.html``), written from report.json's data: tables, the plots, the
players of the example clips, the CLAP scoring and duplicates sections."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

from clap_corpus.core.rejects import Code
from clap_corpus.pipeline.outputs.report_examples import EXAMPLE_AUDIO_DIR
from clap_corpus.pipeline.outputs.report_plots import bin_labels
from clap_corpus.pipeline.outputs.summary import COVERAGE_HEADER, coverage_row
from clap_corpus.pipeline.outputs.summary_model import Coverage


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
