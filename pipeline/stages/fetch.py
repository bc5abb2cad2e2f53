"""The fetch stage: records whose audio is a web URL are downloaded into the cache before sharding.

    records ─► web URL? ─no──────────────────────────────────────────────► records
                  │yes
                  └► status shard (per source, by a stable hash of the key) ─► GroupByKey
                        ─► FetchShardFn: cache / previous status / network; status table written
                              ├─► records, audio now FetchedFile(url, cache object)
                              └─► rejects (stage fetch)

It runs inside ``clapcorpus run`` (only when a source allows http or https) and alone as
``clapcorpus fetch``; both cut the same status shards, so either one's table and cache serve the other.
A record whose URL holds a secret carries a :class:`~core.audio_ref.WebFile`: the URL requested is its
``request``, and everything written (status table, rejects, the fetched record's URL) its redacted
``url``. With ``--retry-failed``, the rows whose cached bytes the previous run's decoder rejected
(``not_audio``, ``empty_file``: an HTML error page served with 200 ...) are fetched again too.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import replace
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import Metrics  # defined there; apache_beam.metrics does not export it
from apache_beam.pvalue import AsDict, TaggedOutput

from clap_corpus.core.audio_ref import WEB_SCHEMES, FetchedFile, RemoteFile, WebFile, is_web_url
from clap_corpus.core.hashing import stable_hash64
from clap_corpus.core.layout import Layout, shard_name
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.transforms import storage
from clap_corpus.transforms.fetch import status as st
from clap_corpus.transforms.fetch.batch import FetchItem, ShardFetcher
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.http import FetchPolicy
from clap_corpus.transforms.stage_output import FETCH_STATUS, StageOutput

log = logging.getLogger(__name__)

REJECTS = "rejects"
STATUS = "status"
NAMESPACE = "clapcorpus"
# What the decoder says of bytes that are no audio file at all: a server's error page, an empty body.
CONTENT_REJECTS = frozenset({Code.NOT_AUDIO, Code.EMPTY_FILE})


def fetches(spec: CorpusSpec) -> bool:
    """Whether any source may name web URLs (the stage is left out of the graph otherwise)."""
    return any(source_schemes(s) & WEB_SCHEMES for s in spec.sources)


def source_schemes(source: SourceSpec) -> set[str]:
    return {storage.scheme(source.audio_root), *source.allowed_schemes}


def needs_fetch(record: Record) -> bool:
    audio = record.audio
    return isinstance(audio, RemoteFile) and not isinstance(audio, FetchedFile) and is_web_url(audio.url)


def cache_root(spec: CorpusSpec, layout: Layout) -> str:
    return spec.options.fetch.cache or layout.fetch_cache_dir()


def policies(spec: CorpusSpec) -> dict[str, FetchPolicy]:
    return {
        s.name: FetchPolicy(
            spec.options.fetch,
            frozenset(source_schemes(s) & WEB_SCHEMES),
            s.allowed_hosts,
            spec.options.sample.max_file_bytes,
            s.secret_query_params,
        )
        for s in spec.sources
    }


def request_url(record: Record) -> str:
    """The URL to request for a record (with whatever credentials the manifest gave it)."""
    audio = record.audio
    assert isinstance(audio, RemoteFile)  # only records that need_fetch are requested
    return audio.request if isinstance(audio, WebFile) else audio.url


def content_rejected(layout: Layout) -> frozenset[tuple[str, str]]:
    """(source, key) of the samples an earlier run into ``layout`` rejected for their content
    (:data:`CONTENT_REJECTS`), from its shard rejects files."""
    found: set[tuple[str, str]] = set()
    try:
        paths = storage.match(storage.join(layout.root, "rejects", "shards", "*", "*.jsonl"))
    except Exception:  # no earlier run
        return frozenset()
    for path in paths:
        try:
            lines = storage.read_bytes(path).decode("utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if isinstance(r, dict) and r.get("code") in CONTENT_REJECTS and r.get("key"):
                found.add((str(r.get("source")), str(r["key"])))
    return frozenset(found)


def status_shard(record: Record, counts: dict[str, int], shard_size: int) -> tuple[tuple[str, str], Record]:
    shards = max(1, math.ceil(counts.get(record.source, 1) / shard_size))
    index = stable_hash64(record.key, salt="fetch-shard") % shards
    return (record.source, shard_name(index)), record


class FetchShardFn(beam.DoFn):
    """One status shard's records in; fetched records, fetch rejects and status counts out."""

    def __init__(
        self,
        spec: CorpusSpec,
        layout: Layout,
        retry_failed: bool,
        rejected: frozenset[tuple[str, str]] = frozenset(),
    ):
        self.spec, self.layout, self.retry_failed, self.rejected = spec, layout, retry_failed, rejected
        self.fetched = Metrics.counter(NAMESPACE, "urls_fetched")
        self.failed = Metrics.counter(NAMESPACE, "urls_failed")

    def setup(self):
        options = self.spec.options.fetch
        cache = ContentCache(cache_root(self.spec, self.layout))
        # A live download writes at least every read_timeout_s; an hour without a write is a dead one.
        cache.sweep(max(3600.0, 10 * options.read_timeout_s))
        self.fetcher = ShardFetcher(
            options,
            cache,
            policies(self.spec),
            retry_failed=self.retry_failed,
            content_rejected=self.rejected,
        )

    def process(self, element: tuple[tuple[str, str], Any]):
        (source, shard), records = element
        records = sorted(records, key=lambda r: (r.key, r.row))
        path = self.layout.fetch_status_path(source, shard)
        items = [FetchItem(r.source, r.row, r.key, request_url(r)) for r in records]
        outcomes = self.fetcher.run(items, st.read_status(path))
        st.write_status(path, [o.status for o in outcomes])
        counts: Counter[str] = Counter()
        for record, outcome in zip(records, outcomes, strict=True):
            row = outcome.status
            counts[row.status] += 1
            counts["bytes_fetched"] += (row.bytes or 0) if row.status == st.OK else 0
            if row.refetched:  # cache_mismatch, content_rejected
                counts[row.refetched] += 1
            if outcome.object is not None:
                self.fetched.inc()
                yield replace(record, audio=FetchedFile(record.audio.url, outcome.object))
            else:
                self.failed.inc()
                detail = f"HTTP {row.http_code}, " if row.http_code else ""
                reason = f"{detail}{row.error_class}: {row.error} (see the fetch status table)"
                yield TaggedOutput(REJECTS, Reject.for_record(record, Stage.FETCH, Code(row.code), reason))
        log.info("fetch %s/%s: %s", source, shard, dict(sorted(counts.items())))
        yield TaggedOutput(STATUS, (source, dict(counts)))


class FetchStage(beam.PTransform):
    """Records in; a :class:`StageOutput` out: the records ready to read, the fetch rejects, and as the
    extra ``FETCH_STATUS`` the (source, status counts) of each status shard. No report: its caller turns
    the counts into one with :func:`report_of_status`."""

    def __init__(self, spec: CorpusSpec, layout: Layout, retry_failed: bool = False):
        super().__init__()
        self.spec, self.layout, self.retry_failed = spec, layout, retry_failed
        # read here, by the launcher, before this run writes its own rejects
        self.rejected = content_rejected(layout) if retry_failed else frozenset()

    def expand(self, records) -> StageOutput:
        # Partition wraps a plain callable (Beam's docs); its type comment asks for a PartitionFn
        partition = beam.Partition(lambda r, _: int(needs_fetch(r)), 2)  # pyright: ignore[reportArgumentType]
        local, web = records | "WebOrNot" >> partition
        counts = (
            web
            | "WebSource" >> beam.Map(lambda r: r.source)
            | "CountWeb" >> beam.combiners.Count.PerElement()
        )
        fetched = (
            web
            | "StatusShard"
            >> beam.Map(status_shard, AsDict(counts), self.spec.options.fetch.status_shard_size)
            | "GroupStatusShard" >> beam.GroupByKey()
            | "FetchShards"
            >> beam.ParDo(
                FetchShardFn(self.spec, self.layout, self.retry_failed, self.rejected)
            ).with_outputs(REJECTS, STATUS, main="records")
        )
        ready = (local, fetched.records) | "FetchedAndLocal" >> beam.Flatten()
        return StageOutput(ready, fetched[REJECTS], extras={FETCH_STATUS: fetched[STATUS]})


def report_of_status(status):
    """The fetch report (one ("fetch", {...}) element) from the stage's status counts. A function, not
    part of the stage: its steps sit beside the stage, labelled FetchCounts and FetchReport, as they
    always have (a relabelled step would break a Dataflow job update)."""
    return status | "FetchCounts" >> beam.combiners.ToList() | "FetchReport" >> beam.Map(fetch_report)


def fetch_report(counts: list[tuple[str, dict[str, int]]]) -> tuple[str, dict[str, Any]]:
    """summary.json's ``stages.fetch``: status counts per source and overall."""
    by_source: dict[str, Counter[str]] = {}
    for source, c in counts:
        by_source.setdefault(source, Counter()).update(c)
    total: Counter[str] = Counter()
    for c in by_source.values():
        total.update(c)
    return "fetch", {
        "total": dict(sorted(total.items())),
        "by_source": {k: dict(sorted(v.items())) for k, v in sorted(by_source.items())},
    }
