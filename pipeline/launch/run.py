"""Running a corpus spec end to end, and the report printed at the end."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, TestOptions

from clap_corpus.core.layout import Layout
from clap_corpus.manifests.notes import coverage_line, join_line, split_map_line
from clap_corpus.pipeline.launch.preflight import check_spec, load_checked_spec
from clap_corpus.pipeline.launch.progress import ProgressMonitor
from clap_corpus.pipeline.launch.workers import run_pipeline
from clap_corpus.pipeline.outputs.report import write_run_report
from clap_corpus.pipeline.outputs.summary_model import NotRun, RunSummary, SourceSummary
from clap_corpus.pipeline.spec.beam_options import pipeline_options
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.pipeline.stages.graph import BuildCorpus
from clap_corpus.transforms import storage

log = logging.getLogger(__name__)


def run_corpus(
    spec: CorpusSpec | str,
    output: str,
    beam_args: Sequence[str] = (),
    *,
    progress: bool = False,
    start_check: bool = True,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """:func:`build_corpus`, its result as JSON data: summary.json's document plus ``wall_seconds``
    (``{"not_run": why, "corpus": ..., "output": ...}`` for a launch that runs nothing). For scripts
    and tests that index it; :meth:`RunSummary.from_json
    <clap_corpus.pipeline.outputs.summary_model.RunSummary.from_json>` types it again."""
    return build_corpus(
        spec, output, beam_args, progress=progress, start_check=start_check, retry_failed=retry_failed
    ).to_json_dict()


def build_corpus(
    spec: CorpusSpec | str,
    output: str,
    beam_args: Sequence[str] = (),
    *,
    progress: bool = False,
    start_check: bool = True,
    retry_failed: bool = False,
) -> RunSummary | NotRun:
    """Build the corpus into ``output`` and return the run summary (also in ``<output>/summary.json``).

    Also writes the run report (``<output>/report/``) and the dataset card (``<output>/README.md``);
    ``progress`` shows a live progress line on stderr while the pipeline runs. Options that build the
    job without running it (``--template_location``, ``--dry_run``) return a :class:`NotRun` that says
    why. ``retry_failed`` refetches the URLs the fetch status tables say failed.
    Before anything runs, unknown Beam options raise
    :class:`~clap_corpus.pipeline.spec.beam_options.UnknownOptionError` and the start check
    (pipeline/launch/preflight.py) raises :class:`~clap_corpus.pipeline.launch.preflight.StartCheckError`
    for sources that do not find their audio. The summary's ``empty_sources`` names the sources that
    ended with no sample although their spec does not allow it. A run that stops before its end (a
    worker's error, a worker process killed) raises
    :class:`~clap_corpus.pipeline.launch.workers.RunFailed`, whose message is one line.
    """
    options = pipeline_options(list(beam_args))
    t0 = time.monotonic()
    if isinstance(spec, str):
        spec, _ = load_checked_spec(spec, start_check=start_check)
    elif start_check:
        check_spec(spec)
    if start_check:
        log.info("start check passed in %.1f s", time.monotonic() - t0)
    if not storage.is_url(output):
        output = os.path.abspath(output)
    layout = Layout(output, spec.corpus)
    not_run = not_executed(options)
    monitor = (
        ProgressMonitor(layout, spec.fingerprint()) if progress and not not_run else contextlib.nullcontext()
    )
    with monitor:
        run_pipeline(options, lambda p: p | "BuildCorpus" >> BuildCorpus(spec, output, retry_failed))
    if not_run:
        return NotRun(not_run=not_run, corpus=spec.corpus, output=output)
    # read back, not taken from the pipeline: on a distributed runner the file is all there is
    summary = RunSummary.read(layout.summary_path())
    summary = summary.model_copy(update={"wall_seconds": round(time.monotonic() - t0, 2)})
    write_run_report(summary)
    return summary


def not_executed(options: PipelineOptions) -> str:
    """Why these options build the graph without running it ("" when they run it).

    With ``--template_location`` DataflowRunner writes a template and submits nothing, and with
    ``--dry_run`` it stops before the service: no summary will exist to report."""
    template = options.view_as(GoogleCloudOptions).template_location
    if template:
        return f"Dataflow template written to {template}; nothing ran"
    if options.view_as(TestOptions).dry_run:
        return "dry run: the graph was translated for the runner; nothing ran"
    return ""


def format_report(summary: RunSummary | NotRun) -> str:
    """A short human report: per source counts, per split shards, accounting, where things are."""
    if isinstance(summary, NotRun):
        return f"corpus '{summary.corpus}' -> {summary.output}: {summary.not_run}"
    lines = [f"corpus '{summary.corpus}' -> {summary.output}"]
    lines.append(
        f"  {'source':<24}{'inputs':>9}{'samples':>9}{'rejects':>9}{'hours':>9}{'expected':>10}{'delta':>9}"
    )
    for name, s in summary.sources.items():
        expected = "" if s.expected is None else str(s.expected)
        delta = "" if s.expected_delta is None else f"{s.expected_delta:+d}"
        lines.append(
            f"  {name:<24}{s.inputs:>9}{s.samples:>9}{s.rejects:>9}{s.hours:>9.3f}{expected:>10}{delta:>9}"
        )
    for split, sp in summary.splits.items():
        lines.append(f"  split {split:<18}{sp.shards:>5} shards {sp.samples:>9} samples")
    ok = "holds" if summary.accounting_ok else "DOES NOT HOLD"
    lines.append(
        f"  accounting: inputs {summary.inputs} = samples {summary.samples} + rejects {summary.rejects}: {ok}"
    )
    for name in summary.empty_sources:
        lines.append(
            f"  EMPTY: source '{name}' produced no samples (see its rejects; allow_empty: true to accept)"
        )
    if summary.rejects_by_code:
        codes = ", ".join(f"{k} {v}" for k, v in summary.rejects_by_code.items())
        lines.append(f"  rejects by reason: {codes}")
    lines.extend(source_note_lines(summary.sources))
    lines.append(
        f"  audio: {summary.truncated} truncated at max_duration_s, {summary.incomplete} "
        f"incomplete kept (shorter than their declared length), {summary.silent} silent rejected"
    )
    stages = summary.stages
    if "exclude" in stages:
        lines.append(exclusion_line(stages["exclude"]))
    if "leakage" in stages:
        leak = stages["leakage"]
        pairs = ", ".join(f"{k} {v}" for k, v in leak["removed_by_overlap"].items())
        detail = f" ({pairs})" if pairs else ""
        lines.append(f"  leakage guard: {leak['removed']} train samples removed by id{detail}")
    lines.extend(removal_lines(summary))
    if "duplicates" in stages:
        lines.extend(duplicate_lines(stages["duplicates"], stages.get("clap") or {}))
        lines.extend(cross_split_lines(stages["duplicates"].get("cross_split")))
    lines.extend(clap_refusal_lines(stages.get("clap")))
    if "fetch" in stages:
        total = stages["fetch"]["total"]
        counts = ", ".join(f"{k} {total.get(k, 0)}" for k in ("ok", "cached", "failed", "deferred"))
        lines.append(f"  fetch: {counts} (status tables under {summary.output}/fetch/status)")
    if "k2c" in stages:
        k2c = stages["k2c"]
        falls = ", ".join(f"{k} {v}" for k, v in k2c["fallbacks"].items()) or "none"
        shipped, short = summary.k2c_captions, summary.k2c_skipped_short
        lines.append(
            f"  keyword-to-caption ({k2c['model']}): {shipped} samples ship a caption, "
            f"{k2c['model_inputs']} model inputs for {k2c['through_model']} records; fallbacks: {falls}; "
            f"dropped from {short} clips under {k2c['min_clip_seconds']:g} s"
        )
    if summary.wall_seconds is not None:
        lines.append(f"  wall time: {summary.wall_seconds:.1f} s")
    outs = summary.outputs
    for kind, folders in (("webdataset", outs.webdataset), ("parquet", outs.parquet)):
        for split, path in (folders or {}).items():
            lines.append(f"  {kind:<11} {split:<8} {path}")
    lines.append(f"  rejects     {outs.rejects}")
    lines.append(f"  summary     {outs.summary}")
    layout = Layout(summary.output, summary.corpus)
    lines.append(f"  report      {layout.report_path('index.html')}")
    lines.append(f"  card        {layout.card_path()}")
    return "\n".join(lines)


def source_note_lines(sources: Mapping[str, SourceSummary]) -> list[str]:
    """What `clapcorpus plan` says per source and a run says again: coverage of the official list,
    the metadata join, split_map entries no clip used."""
    lines = []
    for name, s in sources.items():
        if s.coverage:
            lines.append(coverage_line(name, s.coverage.to_json_dict()))
        notes = s.notes()  # plan's names: the lines are plan's too (manifests/notes.py)
        for line in (join_line(name, notes), split_map_line(name, notes)):
            if line:
                lines.append(line)
    return lines


def exclusion_line(report: dict[str, Any]) -> str:
    """The exclusion lists' removals, per list (the same line in plan and run)."""
    by = ", ".join(f"{k} {v}" for k, v in report.get("removed_by_list", {}).items())
    return f"  exclusion lists: {report['removed']} samples removed" + (f" ({by})" if by else "")


def removal_lines(summary: RunSummary) -> list[str]:
    """Held-out audio kept out of training by exact audio and by CLAP content, each on its own line."""
    codes, lines = summary.rejects_by_code, []
    audio = codes.get("eval_overlap_audio", 0)
    if audio or summary.stages.get("duplicates", {}).get("cross_split"):
        lines.append(f"  leakage guard: {audio} train samples removed by exact audio (eval_overlap_audio)")
    clap = summary.stages.get("clap")
    if clap and clap.get("content_overlap") != "off":
        withheld = (clap.get("withheld") or {}).get("eval_overlap_content", 0)
        lines.append(
            f"  leakage guard: {codes.get('eval_overlap_content', 0)} train samples removed by CLAP content "
            f"(cosine >= {clap['content_threshold']}, eval_overlap_content)"
            + (f"; {withheld} more NOT removed (see below)" if withheld else "")
        )
    return lines


def duplicate_lines(dup: dict[str, Any], clap: dict[str, Any]) -> list[str]:
    """Exact duplicate groups and CLAP's near-duplicate groups, each on its own line."""
    near = clap.get("near_duplicates") or {}
    n_near, in_near, near_removed = (
        near.get("groups", 0),
        near.get("samples_in_groups", 0),
        near.get("removed", 0),
    )
    exact = (dup["groups"] - n_near, dup["samples_in_groups"] - in_near, dup["removed"] - near_removed)
    lines = [
        f"  duplicates ({dup['mode']}): {exact[0]} groups, {exact[1]} samples, {exact[2]} removed, "
        f"exact audio -> {dup['file']}"
    ]
    if near:
        search = near.get("search") or {}
        lines.append(
            f"  near duplicates (CLAP cosine >= {near['threshold']}, {search.get('index', '?')} search): "
            f"{n_near} groups, {in_near} samples, {near_removed} removed (near_duplicate_audio)"
        )
    return lines


def clap_refusal_lines(clap: dict[str, Any] | None) -> list[str]:
    """Loudly: the removals CLAP scoring refused because the model could not tell on this run's clips."""
    refused = (clap or {}).get("removal_refused") or {}
    if not refused:
        return []
    withheld = clap.get("withheld") or {}  # type: ignore[union-attr]
    lines = [
        f"  WARNING: NOTHING REMOVED by CLAP for {', '.join(refused)}: the model cannot tell on this "
        "run's clips (calibration in the report; options.clap.trust_model: true removes anyway)"
    ]
    for code, why in refused.items():
        lines.append(f"    {code}: {why}; {withheld.get(code, 0)} samples would have been removed")
    return lines


def cross_split_lines(cross: dict[str, Any] | None) -> list[str]:
    """The printed summary's view of exact duplicates that sit in more than one split."""
    if not cross or not cross["groups"]:
        return []
    removed = ", ".join(f"{k} {v}" for k, v in cross["removed_by_source"].items())
    lines = [
        f"  duplicates across splits ({cross['mode']}): {cross['groups']} groups, "
        f"{cross['train_copies_removed']} train copies removed" + (f" ({removed})" if removed else "")
    ]
    for g in cross["listed"][:3]:
        lines.append(f"    {'/'.join(g['splits'])}: " + ", ".join(m["key"] for m in g["samples"]))
    return lines
