"""Typed adapter options: each adapter declares what its ``options`` section may hold, as a pydantic model.

The spec loader checks a source's options against its adapter's model at start (:func:`check`), so a
typo, a wrong type or a missing metadata file fails before any worker runs, with the field named.
Fields typed :data:`SpecPath` / :data:`SpecPaths` are resolved relative to the spec file, like
``manifest``; :func:`file_pattern` fields may only name the fields the adapter's rows provide.

The checked options travel to the workers as a plain mapping (what the spec loader keeps), and an
adapter reads them back with :meth:`AdapterOptions.read_back`: the same model, without resolving
or looking at the file system again.
"""

from __future__ import annotations

import functools
import glob
import os
import string
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo

from clap_corpus.transforms import storage


class OptionError(ValueError):
    """A bad option; ``field`` is the option name (the caller adds file and source)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def _resolver(info: ValidationInfo) -> Callable[[str], str] | None:
    # Present while the spec loads; absent when an adapter reads back options checked before.
    return (info.context or {}).get("resolve")


def _path(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a path, got {type(value).__name__}")
    resolve = _resolver(info)
    return value if resolve is None else _existing(resolve(value))


def _paths(value: Any, info: ValidationInfo) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a path or a non-empty list of paths")
    resolve = _resolver(info)
    return list(items) if resolve is None else [p for v in items for p in _expand(resolve(v))]


def _existing(path: str) -> str:
    if not storage.is_url(path) and not os.path.exists(path):
        raise ValueError(f"file not found: {path}")
    return path


def _expand(pattern: str) -> list[str]:
    if storage.is_url(pattern) or not glob.has_magic(pattern):
        return [_existing(pattern)]
    found = sorted(glob.glob(pattern, recursive=True))
    if not found:
        raise ValueError(f"no file matches {pattern}")
    return found


# A metadata file, resolved next to the spec and required to exist (URLs are taken as given:
# checking them would need credentials at spec-load time).
SpecPath = Annotated[str, BeforeValidator(_path)]
# One path or a list of them, each may be a glob pattern that must match at least one file.
SpecPaths = Annotated[list[str], BeforeValidator(_paths)]


def _pattern(fields: tuple[str, ...], value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a file name pattern such as '{id}.wav'")
    try:
        used = [f for _, f, _spec, _conv in string.Formatter().parse(value) if f is not None]
    except ValueError as e:
        raise ValueError(f"not a valid pattern: {e}") from None
    allowed = ", ".join("{" + f + "}" for f in fields)
    if not used:
        raise ValueError(f"the pattern names no field (fields: {allowed})")
    for f in used:
        if f not in fields:
            raise ValueError(f"unknown field {{{f}}} (fields: {allowed})")
    return value


def file_pattern(*fields: str) -> Any:
    """The type of the ``file_pattern`` option of an adapter whose rows provide ``fields``: the audio
    file name built from the row (no folder scan)."""
    return Annotated[str, BeforeValidator(functools.partial(_pattern, fields))]


class WantedList(BaseModel):
    """``options.wanted``: the official list a source read from a mirror is held against
    (manifests/wanted.py)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    files: SpecPaths  # the list's CSV files (AudioSet segments, AudioCaps / Clotho captions)
    id_column: str | None = None  # default: the first of manifests.wanted.ID_COLUMNS present
    origin: str | None = None  # match the mirror's origin ids '<origin>:<id>' (else its ids' stems)


class AdapterOptions(BaseModel):
    """What every adapter accepts. Types are strict (``"yes"`` is not a bool, ``1`` not a string), as
    the hand-written checks were; a value given as null counts as not given."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mean_duration_s: float | None = None  # what `clapcorpus plan` assumes for clips whose metadata has none
    wanted: WantedList | None = None  # the official list this source (a mirror) is meant to cover

    @classmethod
    def check(cls, options: Mapping[str, Any], resolve: Callable[[str], str]) -> dict[str, Any]:
        """``options`` from a spec, checked, with every path resolved by ``resolve`` (spec-relative
        path -> path to read): only the options the spec gave. Raises :class:`OptionError`."""
        model = cls._validate(options, {"resolve": resolve})
        return model.model_dump(exclude_unset=True)

    @classmethod
    def read_back(cls, options: Mapping[str, Any]) -> Self:
        """The model of options that :meth:`check` returned (already resolved and looked at)."""
        return options if isinstance(options, cls) else cls._validate(options, None)

    @classmethod
    def _validate(cls, options: Mapping[str, Any], context: dict[str, Any] | None) -> Self:
        given = {str(k): v for k, v in options.items() if v is not None}
        try:
            return cls.model_validate(given, context=context)
        except ValidationError as e:
            raise _option_error(cls, e) from None


# pydantic's error types -> the kind the message names (the messages the hand-written checks gave)
_KINDS = {
    "string_type": "str",
    "int_type": "int",
    "float_type": "float",
    "bool_type": "bool",
    "list_type": "list",
    "dict_type": "dict",
}


def _option_error(model: type[AdapterOptions], error: ValidationError) -> OptionError:
    errors = error.errors(include_url=False)
    # An unknown option first, as it is most often a misspelt known one.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = first["loc"]
    name = str(loc[0]) if loc else "options"
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        return OptionError(name, f"unknown option (known: {', '.join(sorted(model.model_fields))})")
    if kind == "missing":
        return OptionError(name, "this adapter needs it")
    if kind == "value_error":
        return OptionError(name, str(first["ctx"]["error"]))
    if kind == "literal_error":
        return OptionError(name, f"must be one of {first['ctx']['expected']}, got {value!r}")
    if len(loc) > 1:  # inside a list or dict option: say where
        name = ".".join(map(str, loc))
    expected = _KINDS.get(kind)
    if expected is None:
        return OptionError(name, first["msg"])
    if isinstance(value, bool):
        return OptionError(name, f"expected {expected}, got a boolean")
    return OptionError(name, f"expected {expected}, got {type(value).__name__} ({value!r:.60})")
