"""`clapcorpus fetch`: download every URL a spec's sources name, without building the corpus.

The same status shards, cache and tables as the fetch stage of ``clapcorpus run`` (which then fetches
nothing that this command obtained)."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

import apache_beam as beam

from clap_corpus.core.cli_help import Command
from clap_corpus.core.layout import Layout
from clap_corpus.pipeline.launch.workers import run_pipeline
from clap_corpus.pipeline.spec.beam_options import pipeline_options
from clap_corpus.pipeline.spec.corpus import CorpusSpec, load_spec
from clap_corpus.pipeline.stages.fetch import REJECTS, FetchStage, report_of_status
from clap_corpus.pipeline.stages.graph import ReadSourceFn, RenderCaptionsFn
from clap_corpus.transforms import storage
from clap_corpus.transforms.stage_output import FETCH_STATUS


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="corpus spec (YAML)")
    p.add_argument("--output", required=True, help="output folder or URL: the same as `clapcorpus run`'s")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="fetch again the rows whose status is `failed` (else a rerun keeps their failure)",
    )


def _fetch(args: argparse.Namespace, beam_args: list[str]) -> int:
    report = fetch_corpus(args.spec, args.output, beam_args, retry_failed=args.retry_failed)
    print(format_fetch_report(report))
    return 0


def fetch_corpus(
    spec: CorpusSpec | str, output: str, beam_args: Sequence[str] = (), *, retry_failed: bool = False
) -> dict[str, Any]:
    """Fetch every URL of ``spec`` into ``output``'s cache; returns the status counts (``stages.fetch``
    of a run's summary: per source and in total)."""
    if isinstance(spec, str):
        spec = load_spec(spec)
    if not storage.is_url(output):
        output = os.path.abspath(output)
    layout = Layout(output, spec.corpus)
    run_pipeline(pipeline_options(list(beam_args)), lambda p: _fetch_graph(p, spec, layout, retry_failed))
    return json.loads(storage.read_bytes(_report_path(layout))) | {"output": output}


def _fetch_graph(p: beam.Pipeline, spec: CorpusSpec, layout: Layout, retry_failed: bool) -> None:
    read = (
        p
        | "Sources" >> beam.Create(list(spec.sources))
        | "ReadManifests" >> beam.ParDo(ReadSourceFn()).with_outputs(REJECTS, main="records")
    )
    captioned = (
        read.records
        | "Spread" >> beam.Reshuffle()
        | "Captions"
        >> beam.ParDo(RenderCaptionsFn(spec.options.max_caption_chars)).with_outputs(REJECTS, main="records")
    )
    fetched = captioned.records | "Fetch" >> FetchStage(spec, layout, retry_failed)
    _ = report_of_status(fetched.extras[FETCH_STATUS]) | "Keep" >> beam.Map(
        lambda r: storage.write_bytes_atomic(_report_path(layout), _dump(r))
    )


def _report_path(layout: Layout) -> str:
    return storage.join(layout.root, "fetch", "report.json")


def _dump(report: tuple[str, dict[str, Any]]) -> bytes:
    return json.dumps(report[1], indent=1, sort_keys=True).encode()


def format_fetch_report(report: dict[str, Any]) -> str:
    lines = [f"fetch -> {report['output']}"]
    lines.append(f"  {'source':<24}{'ok':>8}{'cached':>8}{'failed':>8}{'deferred':>9}{'MB fetched':>12}")
    rows = dict(report["by_source"])
    rows["total"] = report["total"]
    for name, c in rows.items():
        c = Counter(c)
        lines.append(
            f"  {name:<24}{c['ok']:>8}{c['cached']:>8}{c['failed']:>8}{c['deferred']:>9}"
            f"{c['bytes_fetched'] / 1e6:>12.2f}"
        )
    lines.append(f"  status tables: {storage.join(report['output'], 'fetch', 'status')}")
    return "\n".join(lines)


COMMANDS = (
    Command(
        "fetch",
        help="download the URLs a spec's manifests name into the cache (unknown options go to Beam)",
        description="Read every source's manifest and download each row's http(s), YouTube or Freesound "
        "audio URL into the content-addressed cache (OUTPUT/fetch/cache, or options.fetch.cache), writing "
        "one status table per shard (OUTPUT/fetch/status/<source>/<shard>.parquet: URL, status, HTTP code, "
        "error, bytes, digest, attempts, seconds). A rerun fetches nothing already cached; `clapcorpus run` "
        "with the same --output then reads the cached bytes.",
        examples=[
            "clapcorpus fetch --spec urls.yaml --output out/",
            "clapcorpus fetch --spec urls.yaml --output out/ --retry-failed",
        ],
        options=_options,
        run=_fetch,
        beam_args=True,
        beam_options=True,
    ),
)
