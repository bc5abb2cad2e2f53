"""One shard from its records: every sample processed, every failure a reject, stats written last.

No Beam here: the shard writer DoFn (pipeline/stages/graph.py) hands this class a shard's records and
counts what it returns. Reading a record's audio and classifying a failure are passed in, because
both need the spec (a source's root, the size limit) that lives above this layer.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.transforms import storage
from clap_corpus.transforms.captions import for_duration as k2c_for_duration
from clap_corpus.transforms.heldout import HeldOutAudio, overlap_removal
from clap_corpus.transforms.sample import SampleOptions, process_sample
from clap_corpus.transforms.shards import (
    EXAMPLES_PER_SOURCE,
    ShardStats,
    ShardWriter,
    count_by,
    distribution_fields,
    example_entry,
    input_fields,
    level_fields,
    read_stats,
    rejects_jsonl,
)

log = logging.getLogger(__name__)


def record_fingerprint(record: Record) -> bytes:
    doc = asdict(record)
    clap = doc.pop("clap")
    # Without CLAP scoring the document is what it always was, so finished shards stay valid; with it,
    # its embeddings enter by digest (bytes are no JSON).
    if clap is not None:
        doc["clap"] = {
            "scores": clap["scores"],
            "audio": hashlib.sha256(clap["audio_embedding"]).hexdigest(),
            "text": hashlib.sha256(clap["text_embeddings"]).hexdigest(),
        }
    return dumps_json(doc)


def shard_fingerprint(
    spec_fingerprint: str, records: list[Record], heldout: HeldOutAudio | None = None
) -> str:
    h = hashlib.sha256(spec_fingerprint.encode())
    # A train shard checked against the held-out audio: what it leaves out depends on that set.
    if heldout is not None:
        h.update(f"heldout:{heldout.fingerprint}\n".encode())
    for r in records:
        h.update(record_fingerprint(r))
        h.update(b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class _Kept:
    record: Record  # as it ships (without a K2C caption its clip is too short for)
    seconds: float
    truncated: bool


class ShardBuilder:
    """Builds the shards of one corpus: ``build(split, shard, records)`` writes one and returns its stats.

    A shard whose stats file carries the same fingerprint is not rebuilt (its stats come back with
    ``reused`` set): that is what makes a killed run resumable. One input's failure becomes a reject
    and the shard goes on; anything that escapes leaves no final-named file and no stats behind.
    """

    def __init__(
        self,
        layout: Layout,
        formats: tuple[str, ...],
        options: SampleOptions,
        read_audio: Callable[[Record], bytes],
        failure_reject: Callable[[Record, Exception], Reject],
        spec_fingerprint: str,
        train_splits: Iterable[str],
        features: tuple[str, ...] = (),
    ):
        self.layout, self.formats, self.options = layout, formats, options
        self.read_audio, self.failure_reject = read_audio, failure_reject
        self.spec_fingerprint = spec_fingerprint
        self.train_splits = tuple(train_splits)
        self.features = features  # core.schema features on in this corpus ("clap")

    def build(
        self, split: str, shard: str, records: Iterable[Record], heldout: HeldOutAudio | None = None
    ) -> ShardStats:
        """The shard's stats: read back when an earlier run finished this very shard, else built now.

        ``heldout`` applies to train splits only; their fingerprint includes it."""
        ordered = sorted(records, key=lambda r: (r.key, r.row))
        checked = heldout if split in self.train_splits else None
        fingerprint = shard_fingerprint(self.spec_fingerprint, ordered, checked)
        done = read_stats(self.layout, split, shard)
        if done is not None and done.fingerprint == fingerprint:
            log.info("shard %s/%s: already complete, skipped", split, shard)
            return replace(done, reused=True)
        return self._write(split, shard, ordered, fingerprint, checked)

    def _write(
        self, split: str, shard: str, records: list[Record], fingerprint: str, heldout: HeldOutAudio | None
    ) -> ShardStats:
        t0 = time.monotonic()
        writer = ShardWriter(self.layout, split, shard, self.formats, self.features)
        rejects: list[Reject] = []
        kept: list[_Kept] = []
        levels: list[tuple[float, float]] = []  # (peak, RMS) dBFS per sample
        inputs: list[tuple[object, object, object]] = []  # codec, channels, rate of the kept samples' files
        examples: list[dict[str, object]] = []
        examples_per_source: Counter[str] = Counter()
        incomplete = 0
        hashes: list[tuple[str, str, str]] = []  # (key, source, audio digest): duplicates report
        removed: list[tuple[str, str, str]] = []  # the same, for train copies of held-out audio
        previous_key = None
        try:
            for record in records:
                if record.key == previous_key:
                    rejects.append(
                        Reject.for_record(
                            record,
                            Stage.SHARD,
                            Code.DUPLICATE_KEY,
                            f"another row of source '{record.source}' has the same id '{record.source_id}'",
                        )
                    )
                    continue
                previous_key = record.key
                try:
                    sample = process_sample(record, self.read_audio(record), self.options)
                except Exception as e:  # one input must never take its shard down
                    rejects.append(self.failure_reject(record, e))
                    continue
                # Decided here, where the digest comes free: a leaked sample must never reach the shard.
                leak = heldout and overlap_removal(record, sample.audio_hash, heldout, self.train_splits)
                if leak:
                    rejects.append(leak)
                    removed.append((record.key, record.source, sample.audio_hash))
                    continue
                flac_offset = writer.add(sample, record.clap)
                if examples_per_source[record.source] < EXAMPLES_PER_SOURCE:
                    examples_per_source[record.source] += 1
                    examples.append(example_entry(sample.meta, flac_offset))
                m = sample.meta
                inputs.append((m["original_codec"], m["original_channels"], m["original_sample_rate"]))
                hashes.append((record.key, record.source, sample.audio_hash))
                kept.append(
                    _Kept(
                        k2c_for_duration(record, sample.duration_s),
                        sample.duration_s,
                        bool(sample.meta["truncated"]),
                    )
                )
                levels.append((sample.meta["peak_dbfs"], sample.meta["rms_dbfs"]))
                incomplete += bool(sample.meta["incomplete"])
            tar_bytes, parquet_bytes = writer.close()
        except BaseException:
            writer.abort()
            raise
        storage.write_bytes_atomic(self.layout.shard_rejects_path(split, shard), rejects_jsonl(rejects))
        seconds_by_source: dict[str, float] = {}
        for k in kept:
            seconds_by_source[k.record.source] = seconds_by_source.get(k.record.source, 0) + k.seconds
        stats = ShardStats(
            split=split,
            shard=shard,
            fingerprint=fingerprint,
            samples=len(kept),
            rejects=len(rejects),
            samples_by_source=dict(sorted(Counter(k.record.source for k in kept).items())),
            rejects_by_source=count_by(rejects, "source"),
            rejects_by_code=count_by(rejects, "code"),
            audio_seconds_by_source={k: round(v, 3) for k, v in sorted(seconds_by_source.items())},
            truncated=sum(1 for k in kept if k.truncated),
            incomplete=incomplete,
            silent=sum(1 for r in rejects if r.code == Code.SILENT),
            k2c_captions=sum(1 for k in kept if k.record.k2c_caption is not None),
            k2c_skipped_short=sum(
                1 for k in kept if k.record.k2c_caption is None and k.record.k2c_min_seconds > 0
            ),
            tar_bytes=tar_bytes,
            parquet_bytes=parquet_bytes,
            views_bytes=writer.views_bytes,
            seconds=round(time.monotonic() - t0, 3),
            audio_hashes=tuple(sorted(hashes)),
            overlap_removed=tuple(sorted(removed)),
            **distribution_fields((k.record, k.seconds) for k in kept),
            **level_fields(levels),
            **input_fields(inputs),
            examples=examples,
        )
        # Written last: the shard counts as done only once this file exists.
        storage.write_bytes_atomic(self.layout.stats_path(split, shard), dumps_json(stats.to_json()))
        rate = stats.samples / stats.seconds if stats.seconds else 0.0
        log.info(
            "shard %s/%s: %d samples, %d rejects in %.1f s (%.1f samples/s)",
            split,
            shard,
            stats.samples,
            stats.rejects,
            stats.seconds,
            rate,
        )
        return stats
