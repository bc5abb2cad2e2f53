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
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from clap_corpus.manifests.tables import RowError, read_table
from clap_corpus.transforms import storage


class OptionError(ValueError):
    """A bad option; ``field`` is the option name (the caller adds file and source). ``errors`` holds
    every bad option of the section, (field, message) each, the first being ``field``'s."""

    def __init__(self, field: str, message: str, more: list[tuple[str, str]] | None = None):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message
        self.errors = [(field, message), *(more or [])]


def _resolver(info: ValidationInfo) -> Callable[[str], str] | None:
    # Present while the spec loads; absent when an adapter reads back options checked before. Adapter
    # options get {"resolve": ...}; a field of the corpus's own options the spec's LoadContext.
    context = info.context
    if isinstance(context, Mapping):
        return context.get("resolve")
    return getattr(context, "resolve", None)


def _path(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a path, got {type(value).__name__}")
    resolve = _resolver(info)
    return value if resolve is None else _existing(resolve(value))


def spec_paths(value: Any, info: ValidationInfo) -> list[str]:
    """One path or a list of them as written in a spec, each a file or a glob that must match one."""
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, tuple) else value
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
SpecPaths = Annotated[list[str], BeforeValidator(spec_paths)]


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


def file_pattern_check(*fields: str) -> BeforeValidator:
    """The check of the ``file_pattern`` option of an adapter whose rows provide ``fields`` (the audio
    file name built from the row, no folder scan), as the option's type declares it:
    ``Annotated[str, file_pattern_check("id")]``."""
    return BeforeValidator(functools.partial(_pattern, fields))


def file_pattern(*fields: str) -> Any:
    """The same type as ``Annotated[str, file_pattern_check(*fields)]``, built at run time: pydantic
    reads it, a type checker cannot (an alias must be written out), so the adapters here write it out."""
    return Annotated[str, file_pattern_check(*fields)]


class WantedList(BaseModel):
    """``options.wanted``: the official list a source read from a mirror is held against
    (manifests/wanted.py)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    files: SpecPaths  # the list's CSV files (AudioSet segments, AudioCaps / Clotho captions)
    id_column: str | None = None  # default: the first of manifests.wanted.ID_COLUMNS present
    origin: str | None = None  # match the mirror's origin ids '<origin>:<id>' (else its ids' stems)


class MetadataJoin(BaseModel):
    """``options.join``: a metadata table joined to the source's records by id (manifests/join.py)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    files: SpecPaths  # CSV / TSV / JSONL / Parquet, or a JSON document (list, or object keyed by id)
    key: str  # the table's id column
    origin: str | None = None  # match '<origin>:<key>' among the records' origin ids (else their ids)
    license: str | None = None  # the column giving each clip's license
    attribution: str | None = None  # a column, or a template of columns: "{username} ({freesound_url})"
    captions: list[str] = Field(default_factory=list)  # columns whose text joins the record's captions
    replace_captions: bool = False  # the table's captions replace the record's (where the row has any)
    format: Literal["csv", "tsv", "jsonl", "parquet", "json"] | None = None  # default: the extension

    def columns(self) -> list[str]:
        """Every column the join names."""
        attribution = template_fields(self.attribution) if self.attribution else []
        return [self.key, *([self.license] if self.license else []), *attribution, *self.captions]

    @model_validator(mode="after")
    def _columns_exist(self, info: ValidationInfo) -> MetadataJoin:
        if _resolver(info) is not None:  # the spec is loading: the table is there to look at
            try:
                self._check_columns()
            except (OSError, UnicodeDecodeError) as e:
                raise ValueError(f"cannot read the table: {e}") from None
        return self

    def _check_columns(self) -> None:
        """The first row of each file has the columns the join names; raises ValueError."""
        for path in self.files:
            first = next((r for r in read_table(path, self.format) if not isinstance(r, RowError)), None)
            if first is None:
                continue  # an empty table joins nothing; said at run time by the counts
            have = set(first[1])
            missing = [c for c in dict.fromkeys(self.columns()) if c not in have]
            if missing:
                names, columns = ", ".join(map(repr, missing)), ", ".join(map(str, have))
                raise ValueError(f"{path} has no column {names} (columns: {columns})")


def template_fields(template: str) -> list[str]:
    """The columns an attribution names: ``{a} by {b}`` -> [a, b]; a plain name is one column."""
    if "{" not in template:
        return [template]
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ExclusionList:
    """One entry of ``exclude``, per source or the corpus's ``options.exclude`` (manifests/exclusion.py)."""

    files: Annotated[tuple[str, ...], BeforeValidator(spec_paths)]
    format: Literal["wavcaps", "csv", "tsv", "text"] | None = None  # default: from the file name
    origin: str | None = None  # the namespace of a CSV's or text list's ids (freesound, youtube ...)
    column: str | None = None  # a CSV's id column (default: the first of ID_COLUMNS present)
    keys: dict[str, str] = Field(default_factory=dict)  # WavCaps JSON key -> namespace, added to its own
    splits: tuple[str, ...] | None = None  # the splits it removes from (default: options.train_splits)


class AdapterOptions(BaseModel):
    """What every adapter accepts. Types are strict (``"yes"`` is not a bool, ``1`` not a string), as
    the hand-written checks were; a value given as null counts as not given."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mean_duration_s: float | None = None  # what `clapcorpus plan` assumes for clips whose metadata has none
    wanted: WantedList | None = None  # the official list this source (a mirror) is meant to cover
    exclude: list[ExclusionList] | None = None  # clips this source must not ship (manifests/exclusion.py)
    join: MetadataJoin | None = None  # license, attribution, captions from a table (manifests/join.py)

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
    """Every problem of the section, one (field, message) each; an unknown option first, as it is most
    often a misspelt known one."""
    errors = sorted(error.errors(include_url=False), key=lambda e: e["type"] != "extra_forbidden")
    described = [_one_error(model, e) for e in errors]
    (field, message), more = described[0], described[1:]
    return OptionError(field, message, more)


def _one_error(model: type[AdapterOptions], first: Any) -> tuple[str, str]:
    loc = first["loc"]
    name = str(loc[0]) if loc else "options"
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        return (name, f"unknown option (known: {', '.join(sorted(model.model_fields))})")
    if kind == "missing":
        return (name, "this adapter needs it")
    if kind == "value_error":
        return (name, str(first["ctx"]["error"]))
    if kind == "literal_error":
        return (name, f"must be one of {first['ctx']['expected']}, got {value!r}")
    if len(loc) > 1:  # inside a list or dict option: say where
        name = ".".join(map(str, loc))
    expected = _KINDS.get(kind)
    if expected is None:
        return (name, first["msg"])
    if isinstance(value, bool):
        return (name, f"expected {expected}, got a boolean")
    return (name, f"expected {expected}, got {type(value).__name__} ({value!r:.60})")
