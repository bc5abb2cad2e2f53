"""What reading a source found besides its records and rejects: the counts that say how much of what
the spec asked for the source's files answered.

:func:`manifests.registry.read_source` fills a :class:`SourceNotes` as the source is read (the
adapter counts the native splits it saw; the ``wanted`` list counts what the mirror holds of it and
what the mirror holds beyond it); `clapcorpus plan` prints it, and a run's ``summary.json`` keeps it
per source (``split_map_unused``, ``native_splits``, ``coverage``), the printed summary, the run
report and the dataset card show it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SourceNotes:
    native_splits: Counter[str] = field(default_factory=Counter)  # native split name -> clips
    # options.wanted: the list's ids, those the mirror has a clip (or a reject) for, those it lacks,
    # and the mirror's clips the list does not name (left out of the corpus)
    wanted: int | None = None
    obtained: int = 0
    missing: int = 0
    not_listed: int = 0
    # options.join: records that found their row of the table, and those that did not
    joined: int | None = None
    not_joined: int = 0

    def to_json(self, split_map: Mapping[str, str] | None = None, split: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"native_splits": dict(sorted(self.native_splits.items()))}
        if split_map and split is None:
            # an entry for a split no clip has is a typo or a layout the spec's author did not expect
            out["split_map_unused"] = sorted(k for k in split_map if k not in self.native_splits)
        if self.wanted is not None:
            out["coverage"] = coverage(self.wanted, self.obtained, self.missing, self.not_listed)
        if self.joined is not None:
            out["join"] = {"matched": self.joined, "unmatched": self.not_joined}
        return out


def coverage(wanted: int, obtained: int, missing: int, not_listed: int) -> dict[str, Any]:
    """A mirror against its official list, in the names plan, ``summary.json``, report and card share."""
    return {
        "wanted": wanted,
        "obtained": obtained,
        "missing": missing,
        "obtained_pct": round(100.0 * obtained / wanted, 2) if wanted else 0.0,
        "not_listed": not_listed,
    }


def split_map_line(name: str, notes: Mapping[str, Any]) -> str | None:
    """The printed warning for split_map entries no clip used, with the native splits seen."""
    unused = notes.get("split_map_unused")
    if not unused:
        return None
    seen = ", ".join(f"{k} {v}" for k, v in notes.get("native_splits", {}).items()) or "none"
    entries = ", ".join(repr(k) for k in unused)
    return f"  {name}: split_map {entries} matched no clip (native splits: {seen})"


def join_line(name: str, notes: Mapping[str, Any]) -> str | None:
    """The printed count of records the metadata table (options.join) completed."""
    j = notes.get("join")
    if j is None:
        return None
    total = j["matched"] + j["unmatched"]
    return f"  {name}: the metadata table (join) has a row for {j['matched']} of {total} records"


def coverage_line(name: str, c: Mapping[str, Any]) -> str:
    """The printed coverage of one mirror (plan and run print the same line)."""
    extra = f"; {c['not_listed']} mirror clips not on the list left out" if c.get("not_listed") else ""
    return (
        f"  {name}: the mirror holds {c['obtained']} of the {c['wanted']} listed rows "
        f"({c['obtained_pct']:g} %), {c['missing']} missing (not_in_mirror){extra}"
    )
