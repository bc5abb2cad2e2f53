"""The ``Exclude`` stage: records an exclusion list names leave as ``excluded`` rejects.

The lists (manifests/exclusion.py) are read once, here in the launcher while the graph is built, so a
list that cannot be read stops the run before any worker starts; the ids travel to the workers inside
the DoFn. The stage sits right after the split (a list applies to the splits it names) and before the
leakage guard. Its report (``summary.json`` ``stages.exclude``): removals in all, per list file and per
source, and how many ids the lists hold.
"""

from __future__ import annotations

from typing import Any

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from clap_corpus.core.records import Record
from clap_corpus.manifests import exclusion
from clap_corpus.manifests.exclusion import Exclusions, list_sizes, load_lists, removal_report
from clap_corpus.pipeline.stages.leakage import CountPairs
from clap_corpus.transforms.stage_output import StageOutput

__all__ = ["ExcludeStage", "load_lists"]

STAGE = "exclude"
REJECTS = "rejects"
COUNTS = "counts"


class _ExcludeFn(beam.DoFn):
    def __init__(self, lists: Exclusions):
        self.lists = lists

    def process(self, record: Record):
        hit = exclusion.excluded(record, self.lists)
        if hit is None:
            yield record
        else:
            reject, name = hit
            yield TaggedOutput(REJECTS, reject)
            yield TaggedOutput(COUNTS, (record.source, name))


def _report(counts: dict[str, Any], sizes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return STAGE, {**counts, **sizes}


class ExcludeStage(beam.PTransform):
    """Records in; a :class:`StageOutput` out, its report one ``("exclude", {...})`` element."""

    def __init__(self, lists: Exclusions):
        super().__init__()
        self.lists = lists

    def expand(self, records) -> StageOutput:
        fn = _ExcludeFn(self.lists)
        out = records | "Exclude" >> beam.ParDo(fn).with_outputs(REJECTS, COUNTS, main="records")
        report = (
            out[COUNTS]
            | "CountExcluded" >> beam.CombineGlobally(CountPairs(removal_report))
            | "ExcludeReport" >> beam.Map(_report, list_sizes(self.lists))
        )
        return StageOutput(out.records, out[REJECTS], report)
