"""Adapter registry: the spec names an adapter, this finds the function that reads it.

An adapter is ``read(source: SourceSpec) -> Iterator[Record | Reject]``: metadata in, normalized
records out, one Reject per row that cannot become a record. It never reads audio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from manifests import audiocaps, audioset, captionfiles, clotho, filenames, freesound, fsd50k, hf_datasets
from manifests.generic import read_generic
from manifests.options import Opt
from manifests.records import Record, Reject
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


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name][0]
    except KeyError:
        raise KeyError(f"unknown adapter '{name}' (known: {', '.join(sorted(ADAPTERS))})") from None


def needs_manifest(name: str) -> bool:
    return ADAPTERS[name][1]
