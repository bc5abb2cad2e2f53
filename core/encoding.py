"""The one JSON encoding of the project: every JSON file and document it writes goes through here."""

from __future__ import annotations

import json
from typing import Any


def dumps_json(doc: Any) -> bytes:
    """Sorted keys, UTF-8, no NaN: the same document always gives the same bytes."""
    return json.dumps(
        doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode()
