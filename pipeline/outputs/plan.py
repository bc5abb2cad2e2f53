"""``plan.json``: the records of each split, written by the graph as soon as every record has its split
(the moment shard boundaries are cut), read by the launcher's progress line (pipeline/launch/progress.py)
for its totals and ETA."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import Layout
from clap_corpus.transforms import storage

METRICS_NAMESPACE = "clapcorpus"  # the namespace WriteShardFn counts in


def plan_doc(records_by_split: Mapping[str, int], spec_fingerprint: str, shard_size: int) -> dict[str, Any]:
    records = {k: int(v) for k, v in sorted(records_by_split.items())}
    return {
        "spec_fingerprint": spec_fingerprint,
        "shard_size": shard_size,
        "records_by_split": records,
        "records": sum(records.values()),
        # What shard_boundaries cuts: one shard per shard_size records (a split's last one shorter).
        "shards_by_split": {k: -(-n // shard_size) for k, n in records.items()},
    }


def write_plan(records_by_split: Mapping[str, int], spec_fingerprint: str, shard_size: int, layout: Layout):
    """Beam step: write ``plan.json`` and count the planned records as a metric."""
    from apache_beam.metrics.metric import Metrics  # defined there; apache_beam.metrics does not export it

    doc = plan_doc(records_by_split, spec_fingerprint, shard_size)
    storage.write_bytes_atomic(layout.plan_path(), dumps_json(doc) + b"\n")
    Metrics.counter(METRICS_NAMESPACE, "planned_records").inc(doc["records"])
    return doc


def read_plan(layout: Layout, spec_fingerprint: str) -> dict[str, Any] | None:
    """The plan of this spec, or None (not written yet, unreadable, or left by another spec)."""
    try:
        doc = json.loads(storage.read_text(layout.plan_path()))
    except Exception:  # not there yet, half-listed on an object store, or garbage: no plan
        return None
    return doc if isinstance(doc, dict) and doc.get("spec_fingerprint") == spec_fingerprint else None
