"""Adapter registry: the spec names an adapter, this finds the function that reads it.

An adapter is ``read(source: SourceSpec) -> Iterator[Record | Reject]``: metadata in, normalized
records out, one Reject per row that cannot become a record. It never reads audio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from manifests.generic import read_generic
from manifests.records import Record, Reject
from manifests.source import SourceSpec

Adapter = Callable[[SourceSpec], Iterator[Record | Reject]]

# name -> (reader, whether the adapter needs a `manifest` file)
ADAPTERS: dict[str, tuple[Adapter, bool]] = {
    "generic": (read_generic, True),
}


def get_adapter(name: str) -> Adapter:
    try:
        return ADAPTERS[name][0]
    except KeyError:
        raise KeyError(f"unknown adapter '{name}' (known: {', '.join(sorted(ADAPTERS))})") from None


def needs_manifest(name: str) -> bool:
    return ADAPTERS[name][1]
