"""Typed adapter options: each adapter declares what its ``options`` section may hold.

The spec loader checks a source's options against its adapter's schema at start, so a typo, a wrong
type or a missing metadata file fails before any worker runs, with the field named. Options of kind
``path`` / ``paths`` are resolved relative to the spec file, like ``manifest``.
"""

from __future__ import annotations

import glob
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from transforms import storage

KINDS = ("str", "int", "float", "bool", "list", "dict", "path", "paths", "pattern")


@dataclass(frozen=True)
class Opt:
    """One option an adapter accepts."""

    kind: str
    required: bool = False
    choices: tuple[str, ...] = ()  # allowed values; for kind "pattern", the allowed {fields}
    doc: str = ""


def file_pattern(*fields: str) -> Opt:
    """The ``file_pattern`` option of an adapter whose rows provide ``fields``."""
    names = ", ".join("{" + f + "}" for f in fields)
    return Opt("pattern", choices=fields, doc=f"audio file name built from the row ({names}); no folder scan")


class OptionError(ValueError):
    """A bad option; ``field`` is the option name (the caller adds file and source)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


# Options every adapter of this package accepts.
COMMON: dict[str, Opt] = {
    "mean_duration_s": Opt(
        "float", doc="duration `clapcorpus plan` assumes for clips whose metadata has none"
    ),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def check_options(
    schema: Mapping[str, Opt], options: Mapping[str, Any], resolve: Callable[[str], str]
) -> dict[str, Any]:
    """Validate ``options`` against ``schema``; return them with every path resolved.

    ``resolve`` turns a spec-relative path into the path to read. Local paths must exist; a glob
    pattern in a ``paths`` option must match at least one file. URLs are taken as given (checking
    them would need credentials at spec-load time).
    """
    out: dict[str, Any] = {}
    unknown = sorted(set(map(str, options)) - set(schema))
    if unknown:
        raise OptionError(unknown[0], f"unknown option (known: {', '.join(sorted(schema))})")
    for name, opt in schema.items():
        value = options.get(name)
        if value is None:
            if opt.required:
                raise OptionError(name, "this adapter needs it")
            continue
        if opt.kind == "path":
            if not isinstance(value, str):
                raise OptionError(name, f"expected a path, got {type(value).__name__}")
            out[name] = _existing(name, resolve(value))
        elif opt.kind == "paths":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
                raise OptionError(name, "expected a path or a non-empty list of paths")
            out[name] = [p for v in items for p in _expand(name, resolve(v))]
        elif opt.kind == "pattern":
            out[name] = _pattern(name, value, opt.choices)
        else:
            types = _TYPES[opt.kind]
            if isinstance(value, bool) and bool not in types:
                raise OptionError(name, f"expected {opt.kind}, got a boolean")
            if not isinstance(value, types):
                raise OptionError(name, f"expected {opt.kind}, got {type(value).__name__} ({value!r:.60})")
            if opt.choices and value not in opt.choices:
                raise OptionError(name, f"must be one of {', '.join(opt.choices)}, got {value!r}")
            out[name] = float(value) if opt.kind == "float" else value
    return out


def _pattern(name: str, value: Any, fields: tuple[str, ...]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OptionError(name, "expected a file name pattern such as '{id}.wav'")
    try:
        used = [f for _, f, spec, conv in string.Formatter().parse(value) if f is not None]
    except ValueError as e:
        raise OptionError(name, f"not a valid pattern: {e}") from None
    allowed = ", ".join("{" + f + "}" for f in fields)
    if not used:
        raise OptionError(name, f"the pattern names no field (fields: {allowed})")
    for f in used:
        if f not in fields:
            raise OptionError(name, f"unknown field {{{f}}} (fields: {allowed})")
    return value


def _existing(name: str, path: str) -> str:
    if not storage.is_url(path) and not os.path.exists(path):
        raise OptionError(name, f"file not found: {path}")
    return path


def _expand(name: str, pattern: str) -> list[str]:
    if storage.is_url(pattern) or not glob.has_magic(pattern):
        return [_existing(name, pattern)]
    found = sorted(glob.glob(pattern, recursive=True))
    if not found:
        raise OptionError(name, f"no file matches {pattern}")
    return found
