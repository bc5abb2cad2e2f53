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
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import yaml

from core.errors import ConfigError
from core.layout import NAME_RULE_TEXT, UnsafeName, check_name
from k2c.config import K2CConfig, K2CConfigError, parse_k2c
from manifests.options import OptionError
from manifests.registry import ADAPTERS, needs_manifest, parse_options
from manifests.source import SourceSpec
from transforms import storage
from transforms.captions import DEFAULT_MAX_CAPTION_CHARS
from transforms.sample import ON_INCOMPLETE, SampleOptions

# Bumped whenever the bytes a shard holds change for the same input and options, so that a resumed
# run never reuses shards written by an incompatible version.
FORMAT_VERSION = "2"

DUPLICATE_MODES = ("report", "keep_first", "drop_all")
CROSS_SPLIT_MODES = ("remove", "report")
FORMATS = ("webdataset", "parquet")


class SpecError(ConfigError):
    """The spec is wrong; the message names the file and the field (one line per problem)."""


@dataclass(frozen=True)
class SourceCheck:
    """What the start check (pipeline/preflight.py) and the end of a run demand of one source."""

    min_audio_found: float = 0.5  # fraction of the sampled rows whose audio file must exist
    allow_empty: bool = False  # a run may end with zero samples from this source


# Options that decide whether a run starts or fails, not what it writes: kept out of the fingerprint
# so that changing them never invalidates finished shards.
_CHECK_OPTIONS = ("start_check_rows", "min_audio_found", "source_checks")


@dataclass(frozen=True)
class CorpusOptions:
    shard_size: int = 512
    formats: tuple[str, ...] = FORMATS
    split_proportions: tuple[tuple[str, float], ...] = (("train", 0.9), ("valid", 0.05), ("test", 0.05))
    sample: SampleOptions = field(default_factory=SampleOptions)
    k2c: K2CConfig | None = None  # options.k2c, validated by k2c/config.py; None: K2C off
    duplicates: str = "report"  # report | keep_first | drop_all (pipeline/duplicates.py)
    # remove | report: a train copy of held-out audio is dropped by the shard writer (pipeline/duplicates.py)
    cross_split_duplicates: str = "remove"
    leakage_guard: bool = True  # pipeline/leakage.py
    train_splits: tuple[str, ...] = ("train", "balanced_train", "unbalanced_train")
    start_check_rows: int = 200  # rows sampled per source by the start check; 0: no start check
    min_audio_found: float = SourceCheck.min_audio_found  # default of the sources' own field
    source_checks: tuple[tuple[str, SourceCheck], ...] = ()  # per source name
    max_caption_chars: int = DEFAULT_MAX_CAPTION_CHARS  # a longer caption rejects its clip (captions.py)


@dataclass(frozen=True)
class CorpusSpec:
    corpus: str
    sources: tuple[SourceSpec, ...]
    options: CorpusOptions
    path: str = ""  # the file it was loaded from

    def source(self, name: str) -> SourceSpec:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)

    def check(self, name: str) -> SourceCheck:
        """The start check's and the end of run's demands on source ``name``."""
        return dict(self.options.source_checks).get(name, SourceCheck())

    def fingerprint(self) -> str:
        """Changes whenever anything that affects the output changes (spec, options, format)."""
        data = asdict(self) | {"path": ""}
        data["options"] = {k: v for k, v in data["options"].items() if k not in _CHECK_OPTIONS}
        doc = {"format_version": FORMAT_VERSION, "spec": _canonical(data)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [_canonical(v) for v in obj]
    return obj


class _Fields:
    """Typed access to one mapping of the YAML, with errors that say where."""

    def __init__(self, data: Any, where: str, file: str):
        if not isinstance(data, Mapping):
            raise SpecError(f"{file}: {where} must be a mapping, got {type(data).__name__}")
        self.data, self.where, self.file = data, where, file
        self.used: set[str] = set()

    def err(self, key: str, msg: str) -> SpecError:
        return SpecError(f"{self.file}: {self.where}.{key}: {msg}")

    def get(
        self, key: str, types: type | tuple[type, ...], default: Any = None, *, required: bool = False
    ) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise SpecError(f"{self.file}: {self.where}: missing required field '{key}'")
            return default
        value = self.data[key]
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise self.err(key, f"expected {_type_names(types)}, got a boolean")
        if not isinstance(value, types):
            raise self.err(key, f"expected {_type_names(types)}, got {type(value).__name__} ({value!r:.60})")
        return value

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise SpecError(f"{self.file}: {self.where}: unknown field(s) {', '.join(unknown)}")


def _type_names(types: type | tuple[type, ...]) -> str:
    ts = types if isinstance(types, tuple) else (types,)
    names = {
        int: "an integer",
        float: "a number",
        str: "text",
        bool: "true/false",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _resolve(base_dir: str, value: str) -> str:
    if storage.is_url(value) or os.path.isabs(value):
        return value
    if storage.is_url(base_dir):  # a spec read from gs://...: its relative paths are URLs too
        scheme, rest = base_dir.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(rest, value))}"
    return os.path.normpath(os.path.join(base_dir, value))


def _proportions(f: _Fields, key: str) -> tuple[tuple[str, float], ...] | None:
    raw = f.get(key, dict)
    if raw is None:
        return None
    out = []
    for name, value in raw.items():
        _split_name(f, key, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise f.err(key, f"proportion of '{name}' must be a non-negative number")
        out.append((name, float(value)))
    total = sum(v for _, v in out)
    if not out or abs(total - 1.0) > 1e-6:
        raise f.err(key, f"proportions must sum to 1, they sum to {total:g}")
    return tuple(out)


def _name(f: _Fields, key: str, kind: str, value: Any) -> str:
    try:
        return check_name(kind, value)
    except UnsafeName:
        raise f.err(key, f"{kind} name {value!r} must be {NAME_RULE_TEXT[kind]}") from None


def _split_name(f: _Fields, key: str, value: Any) -> str:
    return _name(f, key, "split", value)


def _parse_sample_options(f: _Fields) -> SampleOptions:
    d = SampleOptions()
    kw: dict[str, Any] = {}
    for fld in fields(SampleOptions):
        default = getattr(d, fld.name)
        types: tuple[type, ...] = (int, float) if isinstance(default, float) else (type(default),)
        value = f.get(fld.name, types, default)
        if fld.name.endswith("_dbfs"):
            if value > 0:
                raise f.err(fld.name, "a level in dBFS must not be above 0")
        elif isinstance(default, int | float) and not isinstance(default, bool) and value < 0:
            raise f.err(fld.name, "must not be negative")
        kw[fld.name] = type(default)(value) if isinstance(default, float) else value
    _one_of(f, "on_incomplete", kw["on_incomplete"], ON_INCOMPLETE)
    if kw["min_complete_fraction"] > 1:
        raise f.err("min_complete_fraction", "must be a share between 0 and 1")
    return SampleOptions(**kw)


def parse_spec(
    data: Any, file: str = "<spec>", *, missing: list[tuple[str, str]] | None = None
) -> CorpusSpec:
    """The spec in ``data`` (loaded from ``file``); raises one SpecError naming every problem.

    With a ``missing`` list, sources whose manifest file does not exist are not an error here: each
    adds (source name, message) to the list, so that the start check can name them together with the
    sources whose audio is missing (pipeline/preflight.py)."""
    base_dir = os.path.dirname(os.path.abspath(file)) if not storage.is_url(file) else file.rsplit("/", 1)[0]
    top = _Fields(data, "spec", file)
    corpus = _name(top, "corpus", "corpus", top.get("corpus", str, required=True))

    opt = _Fields(top.get("options", dict, {}), "options", file)
    shard_size = opt.get("shard_size", int, 512)
    if shard_size < 1:
        raise opt.err("shard_size", "must be at least 1")
    formats = opt.get("formats", list, list(FORMATS))
    for fmt in formats:
        if fmt not in FORMATS:
            raise opt.err("formats", f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if not formats:
        raise opt.err("formats", "name at least one output format")
    proportions = _proportions(opt, "split_proportions") or CorpusOptions().split_proportions
    k2c = opt.get("k2c", dict)
    sample = _parse_sample_options(opt)
    duplicates = _one_of(opt, "duplicates", opt.get("duplicates", str, "report"), DUPLICATE_MODES)
    cross_split = _one_of(
        opt, "cross_split_duplicates", opt.get("cross_split_duplicates", str, "remove"), CROSS_SPLIT_MODES
    )
    leakage_guard = opt.get("leakage_guard", bool, True)
    train_splits = opt.get("train_splits", list, list(CorpusOptions().train_splits))
    for name in train_splits:
        if not isinstance(name, str):
            raise opt.err("train_splits", f"split names must be text, got {name!r}")
        _split_name(opt, "train_splits", name)
    start_check_rows = opt.get("start_check_rows", int, CorpusOptions.start_check_rows)
    if start_check_rows < 0:
        raise opt.err("start_check_rows", "must not be negative (0 turns the start check off)")
    min_audio_found = _fraction(opt, "min_audio_found", CorpusOptions.min_audio_found)
    max_caption_chars = opt.get("max_caption_chars", int, DEFAULT_MAX_CAPTION_CHARS)
    if max_caption_chars < 1:
        raise opt.err("max_caption_chars", "must be at least 1")
    opt.done()
    options = CorpusOptions(
        shard_size=shard_size,
        formats=tuple(f for f in FORMATS if f in formats),
        split_proportions=proportions,
        sample=sample,
        k2c=k2c,
        duplicates=duplicates,
        cross_split_duplicates=cross_split,
        leakage_guard=leakage_guard,
        train_splits=tuple(train_splits),
        start_check_rows=start_check_rows,
        min_audio_found=min_audio_found,
        max_caption_chars=max_caption_chars,
    )

    raw_sources = top.get("sources", list, required=True)
    top.done()
    if not raw_sources:
        raise SpecError(f"{file}: spec.sources: name at least one source")
    sources = []
    checks: list[tuple[str, SourceCheck]] = []
    seen: set[str] = set()
    # Every source is looked at before failing, so that one message names every wrong source.
    lines: list[str] = []  # every problem, in source order
    failed = False
    not_found: list[tuple[str, str]] = []
    for i, raw in enumerate(raw_sources):
        found_before = len(not_found)
        try:
            source, check = _parse_source(raw, f"sources[{i}]", file, base_dir, min_audio_found, not_found)
        except SpecError as e:
            lines.extend(line for _, line in not_found[found_before:])
            lines.append(str(e))
            failed = True
            continue
        lines.extend(line for _, line in not_found[found_before:])
        if source.name in seen:
            lines.append(f"{file}: sources[{i}].name: duplicate source name '{source.name}'")
            failed = True
            continue
        seen.add(source.name)
        sources.append(source)
        checks.append((source.name, check))
    if failed or (not_found and missing is None):
        raise SpecError("\n".join(lines))
    if missing is not None:
        missing.extend(not_found)
    options = replace(options, source_checks=tuple(checks))
    if k2c is not None:  # validated last: it may name sources
        try:
            options = replace(options, k2c=parse_k2c(k2c, sources=seen, base_dir=base_dir))
        except K2CConfigError as e:
            raise SpecError(f"{file}: {e}") from None
        if options.k2c is not None and options.k2c.max_caption_chars > max_caption_chars:
            # K2C's own cap makes a long generated caption fall back to the template; above the
            # corpus cap it would ship a caption that a source could not.
            raise SpecError(
                f"{file}: options.k2c.max_caption_chars ({options.k2c.max_caption_chars}) must not exceed "
                f"options.max_caption_chars ({max_caption_chars})"
            )
    return CorpusSpec(corpus=corpus, sources=tuple(sources), options=options, path=file)


def _one_of(f: _Fields, key: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise f.err(key, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


def _fraction(f: _Fields, key: str, default: float) -> float:
    value = float(f.get(key, (int, float), default))
    if not 0.0 <= value <= 1.0:
        raise f.err(key, f"must be a fraction between 0 and 1, got {value:g}")
    return value


def _parse_source(
    raw: Any, where: str, file: str, base_dir: str, min_audio_found: float, not_found: list[tuple[str, str]]
) -> tuple[SourceSpec, SourceCheck]:
    f = _Fields(raw, where, file)
    name = _name(f, "name", "source", f.get("name", str, required=True))
    adapter = f.get("adapter", str, required=True)
    if adapter not in ADAPTERS:
        raise f.err("adapter", f"unknown adapter '{adapter}' (known: {', '.join(sorted(ADAPTERS))})")
    manifest = f.get("manifest", str)
    if manifest is None and needs_manifest(adapter):
        raise SpecError(f"{file}: {where}: adapter '{adapter}' needs a 'manifest' field")
    if manifest is not None:
        manifest = _resolve(base_dir, manifest)
        if not storage.is_url(manifest) and not os.path.exists(manifest):
            not_found.append((name, str(f.err("manifest", f"file not found: {manifest}"))))
    audio_root = _resolve(base_dir, f.get("audio_root", str, required=True))
    split = f.get("split", str)
    if split is not None:
        _split_name(f, "split", split)
    split_map = f.get("split_map", dict, {})
    for native, target in split_map.items():
        if not isinstance(target, str):
            raise f.err("split_map", f"target of '{native}' must be a split name")
        _split_name(f, "split_map", target)
    proportions = _proportions(f, "split_proportions")
    options = f.get("options", dict, {})
    try:
        options = parse_options(adapter, options, lambda p: _resolve(base_dir, p))
    except OptionError as e:
        raise f.err(f"options.{e.field}", e.message) from None
    expected = f.get("expected_count", int)
    license_ = f.get("license", str)
    schemes = f.get("allowed_schemes", list, [])
    check = SourceCheck(
        min_audio_found=_fraction(f, "min_audio_found", min_audio_found),
        allow_empty=f.get("allow_empty", bool, False),
    )
    f.done()
    spec = SourceSpec(
        name=name,
        adapter=adapter,
        audio_root=audio_root,
        manifest=manifest,
        split=split,
        split_map={str(k): v for k, v in split_map.items()},
        split_proportions=proportions,
        options=options,
        license=license_,
        expected_count=expected,
        allowed_schemes=tuple(str(s).lower() for s in schemes),
    )
    return spec, check


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
