"""AudioSet ontology ids (``/m/09x0r``) as class names (``Speech``): a caption is never written from ids.

Hub copies of AudioSet carry each clip's labels as ontology ids (agkphysics/AudioSet: ``labels``) next
to their names (``human_labels``); WebDataset mirrors often carry the ids only. Every label and keyword
that is an ontology id is mapped, by :meth:`manifests.base.Adapter.build`, through the names of the
ontology's 632 classes shipped in ``manifests/data/audioset_ontology_names.csv`` (CC BY-SA 4.0, Google
Inc.; ``manifests/data/README.md`` says where it comes from). An id the ontology does not have rejects
its clip as ``unknown_label``, as an id missing from ``class_labels_indices.csv`` does for the
``audioset`` adapter.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable
from importlib import resources

# Knowledge Graph / Freebase ids as the ontology writes them: /m/0838f, /t/dd00088, /g/11b630rrvh
MID_RE = re.compile(r"^/[mgt]/[0-9a-z_]+$")


@functools.cache
def names() -> dict[str, str]:
    """Ontology id -> class name."""
    text = resources.files("clap_corpus.manifests").joinpath("data/audioset_ontology_names.csv").read_text()
    return {row["id"]: row["name"] for row in csv.DictReader(text.splitlines())}


def is_id(value: str) -> bool:
    return bool(MID_RE.match(value.strip()))


def named(values: Iterable[str]) -> tuple[tuple[str, ...], list[str]]:
    """``values`` with every ontology id replaced by its class name (order kept, repeats once), and the
    ids the ontology does not have."""
    out: list[str] = []
    unknown: list[str] = []
    for v in values:
        if is_id(v):
            name = names().get(v.strip())
            if name is None:
                unknown.append(v.strip())
                continue
            v = name
        out.append(v)
    return tuple(dict.fromkeys(out)), unknown
