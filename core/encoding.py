"""The one JSON encoding of the project: every JSON file and document it writes goes through here."""

from __future__ import annotations

import json
from typing import Any


def dumps_json(doc: Any, *, indent: int | None = None) -> bytes:
    """Sorted keys, UTF-8, no NaN: the same document always gives the same bytes. ``indent`` for the
    files people read (summary.json); machine-read files stay compact."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(
        doc, sort_keys=True, ensure_ascii=False, separators=separators, allow_nan=False, indent=indent
    ).encode()
