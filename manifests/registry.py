"""Adapter registry: the spec names an adapter, :func:`read_source` reads a source with it.

An adapter is ``read(source: SourceSpec) -> Iterator[Record | Reject]``: metadata in, normalized
records out, one Reject per row that cannot become a record. It never reads audio. Adapters are
only ever run through :func:`read_source`, which holds every record to the output-path rules, so an
adapter that forgets them (or a manifest value that slips past one) yields a reject, never a file
outside the output folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from core.layout import UnsafeName, check_name
from core.records import Record, Reject
from manifests import audiocaps, audioset, captionfiles, clotho, filenames, freesound, fsd50k, hf_datasets
from manifests.generic import read_generic
from manifests.options import Opt, check_options
from manifests.source import SourceSpec

Adapter = Callable[[SourceSpec], Iterator[Record | Reject]]

# name -> (reader, whether the adapter needs a `manifest` file)
ADAPTERS: dict[str, tuple[Adapter, bool]] = {
    "generic": (read_generic, True),
    "audioset": (audioset.read_audioset, True),
    "audiocaps": (audiocaps.read_audiocaps, True),
    "clotho": (clotho.read_clotho, True),
    "fsd50k": (fsd50k.read_fsd50k, True),
    "freesound": (freesound.read_freesound, True),
    "captionfiles": (captionfiles.read_captionfiles, True),
    "filenames": (filenames.read_filenames, False),
    "hf_datasets": (hf_datasets.read_hf_dataset, False),
}

# name -> the options the adapter accepts (checked, and paths resolved, when the spec loads);
# adapters not listed take any options unchecked.
ADAPTER_OPTIONS: dict[str, dict[str, Opt]] = {
    "audioset": audioset.OPTIONS,
    "audiocaps": audiocaps.OPTIONS,
    "clotho": clotho.OPTIONS,
    "fsd50k": fsd50k.OPTIONS,
    "freesound": freesound.OPTIONS,
    "captionfiles": captionfiles.OPTIONS,
    "filenames": filenames.OPTIONS,
    "hf_datasets": hf_datasets.OPTIONS,
}

# name -> mean clip length (s) `clapcorpus plan` assumes when the metadata gives none (each module
# says where its figure comes from); a source's `options.mean_duration_s` overrides it.
DEFAULT_DURATIONS_S: dict[str, float] = {
    "audioset": audioset.DEFAULT_DURATION_S,
    "audiocaps": audiocaps.DEFAULT_DURATION_S,
    "clotho": clotho.DEFAULT_DURATION_S,
    "fsd50k": fsd50k.DEFAULT_DURATION_S,
    "freesound": freesound.DEFAULT_DURATION_S,
    "captionfiles": captionfiles.DEFAULT_DURATION_S,
    "filenames": filenames.DEFAULT_DURATION_S,
    "hf_datasets": hf_datasets.DEFAULT_DURATION_S,
}


def read_source(source: SourceSpec) -> Iterator[Record | Reject]:
    """Every record and reject of ``source``, each held to the rules of the output layout."""
    try:
        read = ADAPTERS[source.adapter][0]
    except KeyError:
        raise KeyError(f"unknown adapter '{source.adapter}' (known: {', '.join(sorted(ADAPTERS))})") from None
    for item in read(source):
        if isinstance(item, Reject):
            # Rejects are filed by source name: a stray name must not pick the rejects file.
            yield item if item.source == source.name else replace(item, source=source.name)
        else:
            yield _checked(source, item)


def _checked(source: SourceSpec, record: Record) -> Record | Reject:
    def refuse(code: str, reason: str) -> Reject:
        return Reject(
            source.name,
            "manifest",
            code,
            reason,
            path=record.audio_path,
            row=record.row,
            source_id=record.source_id,
        )

    if record.source != source.name:
        return refuse(
            "bad_source", f"the adapter named source {record.source!r} for a record of {source.name!r}"
        )
    for kind, value, code in (("key", record.key, "bad_key"), ("split", record.split, "bad_split")):
        if value is None and kind == "split":
            continue  # placed by hash later, among the spec's own (checked) split names
        try:
            check_name(kind, value)
        except UnsafeName as e:
            return refuse(code, str(e))
    return record


def needs_manifest(name: str) -> bool:
    return ADAPTERS[name][1]


def parse_options(name: str, options: Mapping[str, Any], resolve: Callable[[str], str]) -> Mapping[str, Any]:
    """The ``options`` of a source read by adapter ``name``, checked, with paths resolved by ``resolve``
    (spec-relative path -> path to read); raises :class:`~manifests.options.OptionError`."""
    schema = ADAPTER_OPTIONS.get(name)
    return options if schema is None else check_options(schema, options, resolve)
