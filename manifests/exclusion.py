"""Exclusion lists: clips that must not be trained on, named by origin id, removed as ``excluded`` rejects.

Public datasets publish which of their clips overlap other datasets' evaluation sets: WavCaps its
``json_files/blacklist/*.json`` (``{"AudioSet": ["Y<YTID>.wav", ...], "FreeSound": ["<id>", ...]}``: the
clips shared with AudioCaps / Clotho test, ESC-50, UrbanSound8K, VGGSound), DCASE the Freesound ids its
challenge's training data must leave out. A list applies per source (``sources[i].options.exclude``) or
to the whole corpus (``options.exclude``), each entry one list::

    exclude:
      - files: ${HUB}/WavCaps/json_files/blacklist/blacklist_exclude_test_ac.json   # WavCaps' format
      - files: dcase_excluded_freesound_ids.csv   # a CSV: the id column, and the ids' namespace
        column: sound_id
        origin: freesound
      - files: my_ids.txt                         # one id per line ('#' starts a comment)
        origin: youtube

Formats, from the file name unless ``format`` says: ``.json`` is WavCaps' (each key a namespace:
``AudioSet`` -> ``youtube``, ``FreeSound`` -> ``freesound``, others through ``keys``), ``.csv`` / ``.tsv``
a table (``column``, default the first of :data:`ID_COLUMNS` present), anything else a text list. An id
written ``<namespace>:<id>`` keeps its namespace; others take the list's ``origin`` (any namespace:
``youtube``, ``freesound``, ``bbc`` ...). Ids are held as the adapters write origin ids: a YouTube id
without the ``Y`` AudioSet file names put before it and without the extension, a Freesound id as its
number.

A record whose origin ids meet a list is removed, in the splits ``splits`` names (default: the corpus's
``train_splits``: these lists name what must not be trained on, and a held-out copy of such a clip is
what they protect). The removal is a reject of stage ``exclude``, code ``excluded``, naming the id and
the list; ``summary.json`` counts them under ``stages.exclude`` (per list and per source) and in
``rejects_by_code``, as do the printed summary, the run report and the dataset card; `clapcorpus plan`
predicts them. Lists are read once, when the run starts (a list that cannot be read stops it there);
the ids are held in memory (about 100 bytes each).
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from clap_corpus.core.errors import ConfigError
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.manifests.options import ExclusionList
from clap_corpus.transforms import storage

ID_COLUMNS = ("freesound_id", "sound_id", "fsid", "youtube_id", "YTID", "ytid", "video_id", "id")
# WavCaps' blacklist keys -> the origin namespace of their ids
WAVCAPS_KEYS = {"AudioSet": "youtube", "FreeSound": "freesound"}


def normalized(namespace: str, value: str) -> str:
    """An id as the adapters write it into origin ids (``Y--PJHxphWEs.wav`` -> ``--PJHxphWEs``)."""
    value = value.strip()
    base = posixpath.basename(value.replace("\\", "/"))
    stem, dot, _ = base.rpartition(".")
    value = stem if dot and stem else base
    if namespace == "youtube" and len(value) == 12 and value.startswith("Y"):
        return value[1:]
    if namespace == "freesound" and value.endswith(".0") and value[:-2].isdigit():
        return value[:-2]  # an id that went through a float column
    return value


def _format(path: str, declared: str | None) -> str:
    if declared:
        return declared
    name = path.lower()
    if name.endswith(".json"):
        return "wavcaps"
    if name.endswith(".tsv"):
        return "tsv"
    return "csv" if name.endswith(".csv") else "text"


def _with_namespace(value: str, origin: str | None, path: str) -> str:
    if ":" in value and not value.startswith(("http:", "https:")):
        ns, _, rest = value.partition(":")
        return f"{ns}:{normalized(ns, rest)}"
    if not origin:
        raise ValueError(
            f"{path}: id {value!r} has no namespace: set the list's origin (freesound, youtube ...)"
        )
    return f"{origin}:{normalized(origin, value)}"


def read_ids(entry: ExclusionList) -> dict[str, str]:
    """origin id -> the list file naming it (the first, when several do). Raises OSError or
    ValueError for a list that cannot be read."""
    out: dict[str, str] = {}
    for path in entry.files:
        fmt = _format(path, entry.format)
        text = storage.read_text(path).lstrip("\ufeff")
        ids: Iterable[str]
        if fmt == "wavcaps":
            doc = json.loads(text)
            if not isinstance(doc, dict) or not all(isinstance(v, list) for v in doc.values()):
                raise ValueError(f"{path}: expected an object of id lists (WavCaps' blacklist format)")
            keys = {**WAVCAPS_KEYS, **entry.keys}
            unknown = [k for k in doc if k not in keys]
            if unknown:
                raise ValueError(
                    f"{path}: no namespace for key(s) {', '.join(map(repr, unknown))}: map them with keys"
                )
            ids = [
                f"{keys[k]}:{normalized(keys[k], str(v))}"
                for k, vs in doc.items()
                for v in vs
                if str(v).strip()
            ]
        elif fmt in ("csv", "tsv"):
            reader = csv.reader(
                io.StringIO(text), delimiter="\t" if fmt == "tsv" else ",", skipinitialspace=True
            )
            header = [h.strip() for h in next(reader, [])]
            column = entry.column or next((c for c in ID_COLUMNS if c in header), None)
            if column is None or column not in header:
                raise ValueError(f"{path}: no id column (looked for {entry.column or ', '.join(ID_COLUMNS)})")
            at = header.index(column)
            ids = [
                _with_namespace(row[at], entry.origin, path)
                for row in reader
                if at < len(row) and row[at].strip()
            ]
        else:
            lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
            ids = [_with_namespace(line, entry.origin, path) for line in lines if line]
        for oid in ids:
            out.setdefault(oid, path)
    return out


@dataclass(frozen=True)
class Exclusions:
    """Every list of a corpus, read: per source (``""`` for the corpus-wide lists) the origin ids, the
    list naming each, and the splits each list removes from."""

    # (source name or "", splits) -> {origin id: list file}
    lists: tuple[tuple[str, tuple[str, ...], Mapping[str, str]], ...] = ()
    files: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return bool(self.lists)


def load(spec: Any) -> Exclusions:
    """The exclusion lists of a loaded :class:`~clap_corpus.pipeline.spec.corpus.CorpusSpec`; raises
    OSError / ValueError."""
    lists = []
    files: list[str] = []
    entries: list[tuple[str, Any]] = [("", e) for e in getattr(spec.options, "exclude", ())]
    for source in spec.sources:
        entries += [(source.name, _entry(e)) for e in source.options.get("exclude") or ()]
    for owner, entry in entries:
        splits = tuple(entry.splits) if entry.splits is not None else tuple(spec.options.train_splits)
        lists.append((owner, splits, read_ids(entry)))
        files += [f for f in entry.files if f not in files]
    return Exclusions(tuple(lists), tuple(files))


def _entry(value: Any) -> ExclusionList:
    return value if isinstance(value, ExclusionList) else ExclusionList(**value)


def excluded(record: Record, exclusions: Exclusions) -> tuple[Reject, str] | None:
    """The ``excluded`` reject of a record that a list names (in a split that list applies to), and
    the list's file name (what the counts are kept by)."""
    if not record.origin_ids:
        return None
    for owner, splits, ids in exclusions.lists:
        if (owner and owner != record.source) or record.split not in splits:
            continue
        for oid in record.origin_ids:
            path = ids.get(oid)
            if path is not None:
                name = posixpath.basename(path)
                reason = f"{oid} is on the exclusion list {name} ({path})"
                return Reject.for_record(record, Stage.EXCLUDE, Code.EXCLUDED, reason), name
    return None


class ExclusionListError(ConfigError):
    """An exclusion list that cannot be read (the message names the file)."""


def load_lists(spec: Any) -> Exclusions:
    """The spec's lists, read; raises :class:`ExclusionListError`."""
    try:
        return load(spec)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ExclusionListError(f"{spec.path}: exclude: {e}") from None


def list_sizes(lists: Exclusions) -> dict[str, Any]:
    return {"lists": list(lists.files), "ids": sum(len(ids) for _, _, ids in lists.lists)}


def removal_report(acc: Counter[tuple[str, str]], lists: Exclusions | None = None) -> dict[str, Any]:
    """Removals in all, per list file and per source (plan and the run report the same way)."""
    by_list: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    for (source, name), n in acc.items():
        by_list[name] += n
        by_source[source] += n
    out: dict[str, Any] = {
        "removed": sum(acc.values()),
        "removed_by_list": dict(sorted(by_list.items())),
        "removed_by_source": dict(sorted(by_source.items())),
    }
    return {**out, **list_sizes(lists)} if lists is not None else out
