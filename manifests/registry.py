"""Adapter registry: one table of the adapters a spec may name; :func:`read_source` reads a source.

An adapter reads ``SourceSpec -> Iterator[Record | Reject]``: metadata in, normalized records out, one
Reject per row that cannot become a record. It never reads audio. The adapters of this package are
:class:`~manifests.base.Adapter` subclasses, which apply the key, split, path and license rules the
same way for all. Adapters are only ever run through :func:`read_source`, which holds every record to
the output-path rules, so a reader written without the base class (or a manifest value that slips
past it) yields a reject, never a file outside the output folder, and redacts every URL it hands on
(:func:`redact_item`), so that no secret a manifest's URLs hold is written anywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, overload

from clap_corpus.core.audio_ref import RemoteFile, WebFile, is_web_url
from clap_corpus.core.layout import UnsafeName, check_name
from clap_corpus.core.records import Record, Reject, make_key
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.core.urls import redact_text, redact_url
from clap_corpus.manifests import (
    audiocaps,
    audioset,
    captionfiles,
    clotho,
    filenames,
    freesound,
    fsd50k,
    generic,
    hf_datasets,
    webdataset,
)
from clap_corpus.manifests.base import Adapter
from clap_corpus.manifests.join import apply as join_table
from clap_corpus.manifests.notes import SourceNotes
from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.source import AdapterRules, SourceSpec
from clap_corpus.manifests.wanted import hold_to_list

# (source, scan_audio) -> records and rejects; scan_audio False: metadata only (`clapcorpus plan`)
Reader = Callable[[SourceSpec, bool], Iterator[Record | Reject]]


@dataclass(frozen=True)
class AdapterInfo:
    """One adapter a spec may name."""

    name: str
    read: Reader
    options: type[AdapterOptions]  # what the source's `options` section may hold
    # Mean clip length (s) `clapcorpus plan` assumes when the metadata gives none (each module says
    # where its figure comes from); a source's `options.mean_duration_s` overrides it.
    default_duration_s: float
    doc: str  # one line, for listings
    needs_manifest: bool = True  # whether a source must name a `manifest` file
    # raises ValueError when the source cannot be read as its spec says (checked when the spec loads)
    check: Callable[[SourceSpec], None] | None = None


ADAPTERS: dict[str, AdapterInfo] = {
    a.name: a
    for a in (
        AdapterInfo(
            "generic",
            generic.GenericAdapter.read,
            generic.Options,
            generic.DEFAULT_DURATION_S,
            "a CSV / TSV / JSONL / Parquet manifest, one row per clip",
        ),
        AdapterInfo(
            "audioset",
            audioset.AudioSetAdapter.read,
            audioset.Options,
            audioset.DEFAULT_DURATION_S,
            "AudioSet segment lists and class index (label-only clips)",
        ),
        AdapterInfo(
            "audiocaps",
            audiocaps.AudioCapsAdapter.read,
            audiocaps.Options,
            audiocaps.DEFAULT_DURATION_S,
            "AudioCaps train/val/test CSVs (captions of AudioSet segments)",
        ),
        AdapterInfo(
            "clotho",
            clotho.ClothoAdapter.read,
            clotho.Options,
            clotho.DEFAULT_DURATION_S,
            "Clotho v2.1 caption CSVs, with their metadata CSVs",
        ),
        AdapterInfo(
            "fsd50k",
            fsd50k.FSD50KAdapter.read,
            fsd50k.Options,
            fsd50k.DEFAULT_DURATION_S,
            "FSD50K ground truth, vocabulary and clip info (label-only clips)",
        ),
        AdapterInfo(
            "freesound",
            freesound.FreesoundAdapter.read,
            freesound.Options,
            freesound.DEFAULT_DURATION_S,
            "Freesound-style metadata and LAION-Audio-630K's metadata files",
        ),
        AdapterInfo(
            "captionfiles",
            captionfiles.CaptionFilesAdapter.read,
            captionfiles.Options,
            captionfiles.DEFAULT_DURATION_S,
            "file names with captions: MACS YAML, WavText5K / BBC tables, WavCaps JSON + zips",
            check=captionfiles.check_source,
        ),
        AdapterInfo(
            "filenames",
            filenames.FilenamesAdapter.read,
            filenames.Options,
            filenames.DEFAULT_DURATION_S,
            "every audio file under the root, its cleaned name as caption",
            needs_manifest=False,
        ),
        AdapterInfo(
            "hf_datasets",
            hf_datasets.HFDatasetAdapter.read,
            hf_datasets.Options,
            hf_datasets.DEFAULT_DURATION_S,
            "a Hugging Face datasets folder (Arrow or Parquet) with an Audio column, or a Hub snapshot",
            needs_manifest=False,
            check=hf_datasets.check_source,
        ),
        AdapterInfo(
            "webdataset",
            webdataset.WebDatasetAdapter.read,
            webdataset.Options,
            webdataset.DEFAULT_DURATION_S,
            "WebDataset tars (LAION's, mirrors', this project's shards), streamed",
            needs_manifest=False,
        ),
    )
}


def adapter(name: str) -> AdapterInfo:
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown adapter '{name}' (known: {', '.join(sorted(ADAPTERS))})") from None


def read_source(
    source: SourceSpec, *, scan_audio: bool = True, notes: SourceNotes | None = None
) -> Iterator[Record | Reject]:
    """Every record and reject of ``source``, each held to the rules of the output layout. With
    ``scan_audio`` False the adapter lists no audio folder and checks no file (`clapcorpus plan`).
    ``notes`` (filled as the items are drawn) gets what else the reading found: the native splits,
    how many records the metadata table (``join``) completed, and what a mirror holds of its
    ``wanted`` list."""
    info = adapter(source.adapter)
    notes = notes if notes is not None else SourceNotes()
    owner = getattr(info.read, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, Adapter):
        items = owner.read(source, scan_audio, notes)
    else:  # a reader written without the base class
        items = info.read(source, scan_audio)
    opts = info.options.read_back(source.options) if source.options else None
    if opts is not None and opts.join is not None:
        items = join_table(source.name, opts.join, items, notes)
    wanted = opts.wanted if opts is not None else None
    if wanted is not None:
        items = hold_to_list(source.name, wanted, items, notes)
    for item in items:
        item = redact_item(source, item)
        if isinstance(item, Reject):
            # Rejects are filed by source name: a stray name must not pick the rejects file.
            yield item if item.source == source.name else replace(item, source=source.name)
        else:
            yield _checked(source, item)


def redact_item(source: SourceSpec, item: Record | Reject) -> Record | Reject:
    """``item`` with the secrets of its URLs (userinfo, ``secret_query_params``) redacted wherever it
    would be written: ``source_id`` and the key made from it (re-signed URLs of one object keep one
    key), rejects' path and reason, ``original_data`` and ``attribution``. A web URL that holds a
    secret becomes a :class:`WebFile`: the fetch stage requests the URL, everything else sees the
    redacted one."""
    params = source.secret_query_params
    if isinstance(item, Reject):
        changes = {
            "path": _redact_whole(item.path, params),
            "source_id": _redact_whole(item.source_id, params),
            "reason": redact_text(item.reason, params) if "://" in item.reason else item.reason,
        }
        changes = {k: v for k, v in changes.items() if v != getattr(item, k)}
        return replace(item, **changes) if changes else item
    changes: dict[str, Any] = {}
    sid = _redact_whole(item.source_id, params)
    if sid != item.source_id:
        changes["source_id"] = sid
        if item.key == make_key(item.source, item.source_id):
            changes["key"] = make_key(item.source, sid)
    audio = item.audio
    if type(audio) is RemoteFile and is_web_url(audio.url):
        shown = redact_url(audio.url, params)
        if shown != audio.url:
            changes["audio"] = WebFile(shown, request=audio.url)
    if item.attribution and "://" in item.attribution:
        changes["attribution"] = redact_text(item.attribution, params)
    original = _redact_json(item.original, params)
    if original is not item.original:
        changes["original"] = original
    changes = {k: v for k, v in changes.items() if v != getattr(item, k)}
    return replace(item, **changes) if changes else item


@overload
def _redact_whole(value: str, params: tuple[str, ...]) -> str: ...
@overload
def _redact_whole(value: None, params: tuple[str, ...]) -> None: ...
@overload
def _redact_whole(value: str | None, params: tuple[str, ...]) -> str | None: ...
def _redact_whole(value: str | None, params: tuple[str, ...]) -> str | None:
    if not value or "://" not in value:
        return value
    whole = redact_url(value, params)
    return whole if whole != value else redact_text(value, params)


def _redact_json(value: Any, params: tuple[str, ...]) -> Any:
    """``value`` with every URL inside redacted; the same object when nothing changed."""
    if isinstance(value, str):
        return redact_text(value, params) if "://" in value else value
    if isinstance(value, Mapping):
        out = {k: _redact_json(v, params) for k, v in value.items()}
        return value if all(out[k] is v for k, v in value.items()) else out
    if isinstance(value, list | tuple):
        items = [_redact_json(v, params) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
    return value


def _checked(source: SourceSpec, record: Record) -> Record | Reject:
    def refuse(code: Code, reason: str) -> Reject:
        return Reject(
            source.name,
            Stage.MANIFEST,
            code,
            reason,
            path=str(record.audio),
            row=record.row,
            source_id=record.source_id,
        )

    if record.source != source.name:
        return refuse(
            Code.BAD_SOURCE, f"the adapter named source {record.source!r} for a record of {source.name!r}"
        )
    for kind, value, code in (("key", record.key, Code.BAD_KEY), ("split", record.split, Code.BAD_SPLIT)):
        if value is None and kind == "split":
            continue  # placed by hash later, among the spec's own (checked) split names
        try:
            check_name(kind, value)
        except UnsafeName as e:
            return refuse(code, str(e))
    return record


def check_source(source: SourceSpec) -> None:
    """The adapter's own check of a source when the spec loads; raises ValueError."""
    check = adapter(source.adapter).check
    if check is not None:
        check(source)


def needs_manifest(name: str) -> bool:
    return adapter(name).needs_manifest


def default_duration_s(name: str) -> float:
    return adapter(name).default_duration_s


def parse_options(name: str, options: Mapping[str, Any], resolve: Callable[[str], str]) -> Mapping[str, Any]:
    """The ``options`` of a source read by adapter ``name``, checked against its model, with paths
    resolved by ``resolve`` (spec-relative path -> path to read); raises
    :class:`~manifests.options.OptionError`."""
    return adapter(name).options.check(options, resolve)


# What the checks of a source ask of this table while a spec loads (the spec loader hands it to them
# in its SourceLoadContext: this module imports the adapters, which import manifests/source.py).
RULES = AdapterRules(tuple(ADAPTERS), parse_options, needs_manifest, check_source)
