"""The corpus spec (YAML): what to build, from which sources, with which options.

A wrong spec fails at start with a message that names the file and the field, before any worker
starts. Relative paths in the spec are relative to the spec file's folder.

    corpus: demo
    options:
      shard_size: 512
      max_duration_s: 300
      store_mel: true
      formats: [webdataset, parquet]
      split_proportions: {train: 0.9, valid: 0.05, test: 0.05}
    sources:
      - name: demo
        adapter: generic
        manifest: raw/manifest.jsonl
        audio_root: raw
        split_map: {val: valid}
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from clap_corpus.core.config import (
    MODEL_CONFIG,
    CorpusName,
    Count,
    Fraction,
    LoadContext,
    Natural,
    Proportions,
    SplitName,
    describe,
    dotted,
    field_names,
    loading,
    problem,
    problems,
)
from clap_corpus.core.errors import ConfigError
from clap_corpus.core.urls import SECRET_QUERY_PARAMS
from clap_corpus.k2c import config as k2c_config
from clap_corpus.k2c.config import K2CConfig
from clap_corpus.manifests.options import ExclusionList
from clap_corpus.manifests.registry import RULES as ADAPTER_RULES
from clap_corpus.manifests.source import SourceLoadContext, SourceSpec
from clap_corpus.scoring.config import ClapConfig
from clap_corpus.transforms import storage
from clap_corpus.transforms.captions import DEFAULT_MAX_CAPTION_CHARS
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.sample import SampleOptions

# Bumped whenever the bytes a shard holds change for the same input and options, so that a resumed
# run never reuses shards written by an incompatible version.
# 3 (issue 25): the views computed the same on every CPU; unmasked multichannel mixed as FFmpeg guesses.
FORMAT_VERSION = "3"

# views: the mel views as a sidecar shard set (<out>/views/...) instead of inside the webdataset tars
Format = Literal["webdataset", "parquet", "views"]
FORMATS: tuple[str, ...] = get_args(Format)
DEFAULT_FORMATS: tuple[Format, ...] = ("webdataset", "parquet")  # views inside the tars, no sidecar


class SpecError(ConfigError):
    """The spec is wrong; the message names the file and the field (one line per problem)."""


@dataclass(frozen=True, config=MODEL_CONFIG)
class SourceCheck:
    """What the start check (pipeline/launch/preflight.py) and the end of a run demand of one source; written
    in the source's entry of the spec."""

    # fraction of the sampled rows whose audio file must exist; None: the corpus's options.min_audio_found
    min_audio_found: Fraction | None = None
    allow_empty: StrictBool = False  # a run may end with zero samples from this source


# Options that decide whether a run starts or fails, not what it writes: kept out of the fingerprint
# so that changing them never invalidates finished shards.
_CHECK_OPTIONS = ("start_check_rows", "min_audio_found", "source_checks")


@dataclass(frozen=True, config=MODEL_CONFIG)
class CorpusOptions:
    """The spec's ``options``; SampleOptions' fields are written among these, and each source's
    SourceCheck in the source's entry (see :func:`parse_spec`)."""

    shard_size: Count = 512
    formats: tuple[Format, ...] = DEFAULT_FORMATS  # kept in FORMATS' order
    split_proportions: Proportions = (("train", 0.9), ("valid", 0.05), ("test", 0.05))
    sample: SampleOptions = Field(default_factory=SampleOptions)
    k2c: K2CConfig | None = None  # options.k2c (k2c/config.py); None: K2C off
    # report | keep_first | drop_all (pipeline/stages/duplicates.py)
    duplicates: Literal["report", "keep_first", "drop_all"] = "report"
    # remove | report: a train copy of held-out audio is dropped by the shard writer
    # (pipeline/stages/duplicates.py)
    cross_split_duplicates: Literal["remove", "report"] = "remove"
    leakage_guard: StrictBool = True  # pipeline/stages/leakage.py
    train_splits: tuple[SplitName, ...] = ("train", "balanced_train", "unbalanced_train")
    start_check_rows: Natural = 200  # rows sampled per source by the start check; 0: no start check
    min_audio_found: Fraction = 0.5  # the sources' default for their own field
    source_checks: tuple[tuple[str, SourceCheck], ...] = ()  # per source name, each min_audio_found set
    max_caption_chars: Count = DEFAULT_MAX_CAPTION_CHARS  # a longer caption rejects its clip (captions.py)
    fetch: FetchOptions = Field(default_factory=FetchOptions)  # downloading URLs (transforms/fetch/config.py)
    clap: ClapConfig | None = None  # options.clap (scoring/config.py); None: no CLAP scoring
    exclude: tuple[ExclusionList, ...] = ()  # exclusion lists for every source (manifests/exclusion.py)

    @field_validator("formats")
    @classmethod
    def _some_formats(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one output format")
        return tuple(f for f in FORMATS if f in value)

    @field_validator("k2c")
    @classmethod
    def _k2c_on(cls, value: K2CConfig | None) -> K2CConfig | None:
        return value if value is not None and value.enabled else None

    @field_validator("clap")
    @classmethod
    def _clap_on(cls, value: ClapConfig | None) -> ClapConfig | None:
        return value if value is not None and value.enabled else None

    @model_validator(mode="after")
    def _source_defaults(self) -> CorpusOptions:
        checks = tuple(
            (
                name,
                check
                if check.min_audio_found is not None
                else SourceCheck(self.min_audio_found, check.allow_empty),
            )
            for name, check in self.source_checks
        )
        object.__setattr__(self, "source_checks", checks)  # still being built
        if "views" in self.formats and not self.sample.store_mel:
            raise ValueError("formats: views (sidecar shards of the mel views) needs store_mel: true")
        return self


@dataclass(frozen=True, config=MODEL_CONFIG)
class CorpusSpec:
    corpus: CorpusName
    sources: tuple[SourceSpec, ...]
    options: CorpusOptions = Field(default_factory=CorpusOptions)
    path: str = ""  # the file it was loaded from

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def source_order(self) -> dict[str, int]:
        """Each source's place in the spec: who of a duplicate group stays (duplicate_groups.py)."""
        return {s.name: i for i, s in enumerate(self.sources)}

    def guard_sources(self) -> frozenset[str]:
        """Sources only read to keep their clips out of training (``guard: true``)."""
        return frozenset(s.name for s in self.sources if s.guard)

    def k2c_sources(self) -> list[str]:
        """The sources keyword-to-caption writes captions for (``mode`` or a per-source override not
        ``off``): with none, K2C is off whatever the section says, and needs no model."""
        k2c = self.options.k2c
        return [] if k2c is None else [s.name for s in self.sources if k2c.mode_for(s.name) != "off"]

    def check(self, name: str) -> SourceCheck:
        """The start check's and the end of run's demands on source ``name``."""
        return dict(self.options.source_checks).get(name) or SourceCheck(self.options.min_audio_found)

    def fingerprint(self) -> str:
        """Changes whenever anything that affects the output changes (spec, options, format)."""
        data: dict[str, Any] = asdict(self) | {"path": ""}
        data["options"] = {k: v for k, v in data["options"].items() if k not in _CHECK_OPTIONS}
        # How bytes are fetched (timeouts, limits, the cache) is not what a shard holds: a fetched
        # record carries its content's digest, and allowed_hosts only decides manifest rejects.
        data["options"].pop("fetch", None)
        data["sources"] = [{k: v for k, v in s.items() if k != "allowed_hosts"} for s in data["sources"]]
        for s in data["sources"]:  # the default redaction list, absent as it was before the field existed
            if tuple(s.get("secret_query_params", ())) == SECRET_QUERY_PARAMS:
                del s["secret_query_params"]
        if data["options"].get("clap") is None:  # absent as it was before the option existed
            data["options"].pop("clap", None)
        sample = data["options"].get("sample", {})
        for name, default in _ADDED_SAMPLE_DEFAULTS.items():
            if sample.get(name) == default:
                del sample[name]
        doc = {"format_version": FORMAT_VERSION, "spec": _canonical(data)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @field_validator("sources")
    @classmethod
    def _some_sources(cls, value: tuple[SourceSpec, ...]) -> tuple[SourceSpec, ...]:
        if not value:
            raise ValueError("name at least one source")
        return value

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> CorpusSpec:
        if loading(info) is None:
            return self
        found = []
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            if source.name in seen:
                found.append((("sources", i), problem(f"duplicate source name '{source.name}'", "name")))
            seen.add(source.name)
        k2c = self.options.k2c
        if k2c is not None:
            for message in k2c_config.unknown_source_problems(k2c, seen):
                found.append((("options", "k2c"), problem(message, "sources")))
            if k2c.max_caption_chars > self.options.max_caption_chars:
                # K2C's own cap makes a long generated caption fall back to the template; above the
                # corpus cap it would ship a caption that a source could not.
                message = (
                    f"must not exceed options.max_caption_chars ({self.options.max_caption_chars}), "
                    f"got {k2c.max_caption_chars}"
                )
                found.append((("options", "k2c"), problem(message, "max_caption_chars")))
        if found:
            raise problems(found, "CorpusSpec")
        return self


# Sample options added after corpora were built enter the fingerprint only when set away from their
# default: at the default, the output is what it was, and so are the fingerprint and shard reuse.
_ADDED_SAMPLE_DEFAULTS: dict[str, Any] = {"mel_single_view": False}


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    return obj


def _resolve(base_dir: str, value: str) -> str:
    if storage.is_url(value) or os.path.isabs(value):
        return value
    if storage.is_url(base_dir):  # a spec read from gs://...: its relative paths are URLs too
        scheme, rest = base_dir.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, value))}"
    return os.path.normpath(os.path.join(base_dir, value))


# --- the document as written -> the model's shape, and back for the messages ---------------------
#
# The document writes SampleOptions' fields among the corpus options and each source's SourceCheck in
# the source's entry; the model keeps them apart (the per-sample steps get SampleOptions alone, the
# workers never see the start check). _model_input moves them; _where maps an error's place back.

_SAMPLE_FIELDS = frozenset(field_names(SampleOptions))
_CHECK_FIELDS = frozenset(field_names(SourceCheck))
# Set by parse_spec, never written in a spec: (model, field) pairs reported as unknown fields.
_NOT_WRITTEN = {
    CorpusSpec: ("path",),
    CorpusOptions: ("sample", "source_checks"),
    ClapConfig: ("model_path",),
}


def _document_fields(cls: type) -> list[str]:
    """The names a spec may write in the mapping that model ``cls`` is read from."""
    names = [n for n in field_names(cls) if n not in _NOT_WRITTEN.get(cls, ())]
    if cls is CorpusOptions:
        names += _SAMPLE_FIELDS
    elif cls is SourceSpec:
        names += _CHECK_FIELDS
    elif cls is K2CConfig:
        names = k2c_config.document_fields(cls)
    return names


def _present(raw: Any) -> Any:
    """A mapping without its empty fields: ``shard_size:`` with no value means the default."""
    return {k: v for k, v in raw.items() if v is not None} if isinstance(raw, Mapping) else raw


def _model_input(data: Any, file: str) -> tuple[Any, list[str]]:
    """The document reshaped for CorpusSpec, and the paths of fields it may not write."""
    if not isinstance(data, Mapping):
        return data, []
    written = [f"spec.{k}" for k in _NOT_WRITTEN[CorpusSpec] if k in data]
    doc: dict[str, Any] = {**_present(data), "path": file}
    checks: list[tuple[str, dict[str, Any]]] = []
    if isinstance(doc.get("sources"), list):
        entries = []
        for raw in map(_present, doc["sources"]):
            if isinstance(raw, Mapping):
                checks.append((str(raw.get("name")), {k: v for k, v in raw.items() if k in _CHECK_FIELDS}))
                raw = {k: v for k, v in raw.items() if k not in _CHECK_FIELDS}
            else:
                checks.append(("", {}))  # keeps positions aligned with the sources
            entries.append(raw)
        doc["sources"] = entries
    options = _present(doc.get("options", {}))
    if isinstance(options, Mapping):
        written += [f"options.{k}" for k in _NOT_WRITTEN[CorpusOptions] if k in options]
        doc["options"] = {k: v for k, v in options.items() if k not in _NOT_WRITTEN[CorpusOptions]}
        doc["options"]["sample"] = {k: v for k, v in options.items() if k in _SAMPLE_FIELDS}
        for k in doc["options"]["sample"]:
            del doc["options"][k]
        doc["options"]["source_checks"] = checks
        if "k2c" in options:
            written += [f"options.k2c.{k}" for k in k2c_config.derived_fields_in(options["k2c"])]
            doc["options"]["k2c"] = k2c_config.document(options["k2c"])
    return doc, written


def _where(loc: tuple[str | int, ...]) -> str | None:
    """Where the user wrote what is at runtime location ``loc`` (None: reported elsewhere)."""
    if loc[:2] == ("options", "sample"):
        return dotted("options", loc[2:])
    if loc[:2] == ("options", "source_checks"):
        # ("options", "source_checks", i, 1, field): that field of sources[i]
        return dotted(f"sources[{loc[2]}]", loc[4:]) if len(loc) > 3 and loc[3] == 1 else None
    if len(loc) == 1:  # a field of the top: spec.corpus, spec.sources ...
        return f"spec.{loc[0]}"
    return dotted("", loc)


def _order(path: str) -> tuple[int, int]:
    """Lines of the spec's top, then options, then each source in order."""
    m = re.match(r"sources\[(\d+)\]", path)
    if m:
        return (2, int(m.group(1)))
    return (1, 0) if path.startswith("options") else (0, 0)


_SPEC: TypeAdapter[CorpusSpec] = TypeAdapter(CorpusSpec)


def parse_spec(
    data: Any, file: str = "<spec>", *, missing: list[tuple[str, str]] | None = None
) -> CorpusSpec:
    """The spec in ``data`` (loaded from ``file``); raises one SpecError naming every problem, one per
    line, in the order of the document.

    With a ``missing`` list, sources whose manifest file does not exist are not an error here: each
    adds (source name, message) to the list, so that the start check can name them together with the
    sources whose audio is missing (pipeline/launch/preflight.py)."""
    base_dir = os.path.dirname(os.path.abspath(file)) if not storage.is_url(file) else file.rsplit("/", 1)[0]
    context = SourceLoadContext(base_dir, lambda p: _resolve(base_dir, p), adapters=ADAPTER_RULES)
    doc, written = _model_input(data, file)
    found = [(path, "unknown field") for path in written]
    spec = None
    try:
        spec = _SPEC.validate_python(doc, context=context)
    except ValidationError as e:
        found += describe(e, CorpusSpec, _where, _document_fields)
    not_found = _missing_manifests(data, file, context)
    lines = sorted(
        [(_order(path), 0, f"{file}: {path or 'spec'}: {message}") for path, message in found]
        + [(_order(f"sources[{i}]"), -1, line) for i, _, line in not_found],
        key=lambda t: (t[0], t[1]),
    )
    if found or (not_found and missing is None):
        raise SpecError("\n".join(line for _, _, line in lines))
    if missing is not None:
        missing.extend((name, line) for _, name, line in not_found)
    return spec  # type: ignore[return-value]  # set: no problem was found


def _missing_manifests(data: Any, file: str, context: LoadContext) -> list[tuple[int, str, str]]:
    """(position, source name, message) for each source whose local manifest file does not exist."""
    out = []
    sources = data.get("sources") if isinstance(data, Mapping) else None
    for i, raw in enumerate(sources if isinstance(sources, list) else []):
        manifest = raw.get("manifest") if isinstance(raw, Mapping) else None
        if isinstance(manifest, str):
            path = context.resolve(manifest)
            if not storage.is_url(path) and not os.path.exists(path):
                out.append(
                    (i, str(raw.get("name")), f"{file}: sources[{i}].manifest: file not found: {path}")
                )
    return out


def load_spec(path: str, *, missing: list[tuple[str, str]] | None = None) -> CorpusSpec:
    try:
        if storage.is_url(path):
            text = storage.read_text(path)
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None
    return parse_spec(expand_env(data, path), path, missing=missing)


# ${VAR} or ${VAR:-default} (the default may itself hold one ${OTHER}): shipped specs point at the
# user's copies through variables, e.g. ${AUDIOSET_DIR:-${CLAP_DATA}/audioset}.
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^{}]|\{[^{}]*\})*))?\}")


def expand_env(data: Any, file: str = "<spec>", where: str = "spec") -> Any:
    """Expand environment variables in every string of a loaded spec; an unset variable without a
    default is a SpecError naming the field. As in the shell, ``:-`` also replaces an empty value."""
    if isinstance(data, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            value = os.environ.get(name)
            if value:
                return value
            if default is None:
                raise SpecError(
                    f"{file}: {where}: environment variable {name} is not set "
                    f"(export it, or write ${{{name}:-default}})"
                )
            return expand_env(default, file, where)

        return _ENV_RE.sub(sub, data)
    if isinstance(data, Mapping):
        prefix = "" if where == "spec" else f"{where}."
        return {k: expand_env(v, file, f"{prefix}{k}") for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, file, f"{where}[{i}]") for i, v in enumerate(data)]
    return data
