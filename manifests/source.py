"""What a corpus spec says about one source, and the path rules every adapter shares.

Every adapter imports this module, and the adapter registry (manifests/registry.py) imports every
adapter: the checks of a source that need the registry (is the adapter known, are its options right)
get it from the load context (:class:`SourceLoadContext`, built by the spec loader), not by an import.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, StrictBool, StrictStr, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from clap_corpus.core.audio_ref import is_web_url
from clap_corpus.core.config import (
    MODEL_CONFIG,
    LoadContext,
    Proportions,
    Rows,
    SourceName,
    SplitName,
    loading,
    problem,
    problems,
)
from clap_corpus.core.rejects import Code, RejectError, Stage
from clap_corpus.core.urls import SECRET_QUERY_PARAMS, BadURL, normalize_host, parse_web_url
from clap_corpus.manifests.options import OptionError
from clap_corpus.transforms import storage


@dataclass(frozen=True)
class AdapterRules:
    """What the checks of a source being loaded ask of the adapter registry (registry.RULES)."""

    names: Collection[str]  # the adapters a spec may name
    # (adapter, options as written, spec path -> path to read) -> the checked options; raises OptionError
    parse_options: Callable[[str, Mapping[str, Any], Callable[[str], str]], Mapping[str, Any]]
    needs_manifest: Callable[[str], bool]
    check_source: Callable[[SourceSpec], None]  # the adapter's own check; raises ValueError


@dataclass(frozen=True)
class SourceLoadContext(LoadContext):
    """The load context of a spec with sources: the spec file's, and the adapter registry's rules."""

    adapters: AdapterRules


def _adapters(info: ValidationInfo) -> AdapterRules | None:
    """The registry's rules while a spec loads, else None (a SourceSpec built in code)."""
    context = loading(info)
    if context is None:
        return None
    if not isinstance(context, SourceLoadContext):
        raise TypeError("a spec with sources loads with a SourceLoadContext (the adapter registry's rules)")
    return context.adapters


@pydantic_dataclass(frozen=True, config=MODEL_CONFIG)
class SourceSpec:
    """One source of a corpus (an entry of the spec's ``sources``), with every path resolved against the
    spec's folder. The start check's fields of the entry live in pipeline/spec/corpus.py's SourceCheck."""

    name: SourceName
    adapter: StrictStr  # a name in manifests/registry.py
    audio_root: StrictStr
    manifest: StrictStr | None = None
    split: SplitName | None = None  # every clip of the source goes to this split
    split_map: Mapping[str, SplitName] = Field(default_factory=dict)  # native split name -> corpus split
    split_proportions: Proportions | None = None  # hash split for clips without one
    # adapter-specific (manifests/options.py); checked when absent too: an adapter may need one
    options: Mapping[str, Any] = Field(default_factory=dict, validate_default=True)
    license: StrictStr | None = None  # default license for clips whose row names none
    expected_count: Rows | None = None
    allowed_schemes: tuple[StrictStr, ...] = ()  # URL schemes audio paths may use besides the root's own
    # hosts http(s) audio URLs may name (and redirects may lead to); empty: any host
    allowed_hosts: tuple[StrictStr, ...] = ()
    # query parameters whose values are secrets (or change when a URL is signed again): written as
    # REDACTED in keys, source_id, rejects, status tables and logs (core/urls.py)
    secret_query_params: tuple[StrictStr, ...] = SECRET_QUERY_PARAMS
    # guard only (an evaluation set): read, hashed and embedded so that training clips that overlap
    # it (by id, decoded audio or audio embedding) are removed; its own clips are never written
    guard: StrictBool = False

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, value: str, info: ValidationInfo) -> str:
        adapters = _adapters(info)
        if adapters is not None and value not in adapters.names:
            raise ValueError(f"unknown adapter '{value}' (known: {', '.join(sorted(adapters.names))})")
        return value

    @field_validator("audio_root", "manifest")
    @classmethod
    def _resolved(cls, value: str | None, info: ValidationInfo) -> str | None:
        context = loading(info)
        return context.resolve(value) if context is not None and value is not None else value

    @field_validator("allowed_schemes", "secret_query_params")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s.lower() for s in value)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # One form for every host name (IDNA A-labels, lower case), the form URLs are compared in.
        try:
            return tuple(normalize_host(h).strip("[]") for h in value)
        except BadURL as e:
            raise ValueError(str(e)) from None

    @field_validator("options")
    @classmethod
    def _adapter_options(cls, value: Mapping[str, Any], info: ValidationInfo) -> Mapping[str, Any]:
        context, adapters = loading(info), _adapters(info)
        if context is None or adapters is None or "adapter" not in info.data:  # built in code, or bad adapter
            return value
        try:
            return adapters.parse_options(info.data["adapter"], value, context.resolve)
        except OptionError as e:
            if len(e.errors) == 1:
                raise problem(e.message, at=e.field) from None
            # every bad option of the section, one line each
            raise problems([((), problem(m, at=f)) for f, m in e.errors], "SourceSpec") from None

    @model_validator(mode="after")
    def _manifest_when_needed(self, info: ValidationInfo) -> SourceSpec:
        adapters = _adapters(info)
        if adapters is None:
            return self
        if self.manifest is None and adapters.needs_manifest(self.adapter):
            raise problem(f"adapter '{self.adapter}' needs a 'manifest' field")
        if self.split is not None and self.split_map:
            # split wins over split_map: the map would be accepted and do nothing
            raise problem(
                f"has no effect: split sends every clip to '{self.split}' (remove one of the two)",
                "split_map",
            )
        try:
            adapters.check_source(self)
        except ValueError as e:
            raise problem(str(e), at="options") from None
        return self


class PathRejected(RejectError, ValueError):
    """An audio path that the source may not read (escapes its root, foreign URL scheme ...).

    A ``manifest`` reject where the row is read; the worker's re-check right before reading files it
    under ``read`` (pipeline.audio_input.failure_reject). A ValueError too: adapters catch it with
    the split errors."""

    def __init__(self, code: Code | str, reason: str):
        super().__init__(Stage.MANIFEST, code, reason)


def resolve_audio_path(source: SourceSpec, value: str) -> str:
    """Turn a manifest's audio path into the path to read, or raise :class:`PathRejected`.

    Relative paths are joined to the source's audio root. Nothing outside the root is ever read:
    '..' escapes, absolute paths elsewhere and (for local roots) symlinks that leave the root are
    refused, as are URLs with a scheme the spec did not allow.
    """
    value = value.strip()
    if not value:
        raise PathRejected(Code.MISSING_PATH, "the row has no audio path")
    if "\x00" in value:
        raise PathRejected(Code.BAD_PATH, "the audio path contains a NUL byte")
    root = source.audio_root
    if storage.is_url(value) and storage.scheme(value) == "file":
        value = value[len("file://") :]  # a local path in URL clothing gets the local rules
    if storage.is_url(value):
        allowed = {storage.scheme(root), *source.allowed_schemes}
        if storage.scheme(value) not in allowed:
            raise PathRejected(
                Code.SCHEME_NOT_ALLOWED,
                f"URL scheme '{storage.scheme(value)}' is not allowed for this source "
                f"(allowed: {', '.join(sorted(allowed))})",
            )
        if storage.scheme(value) == storage.scheme(root):
            _require_inside_url(root, value)
        if is_web_url(value):
            try:
                urlsplit(value)
            except ValueError as e:  # "http://[::1": an unclosed IPv6 host
                raise PathRejected(Code.BAD_PATH, f"not a valid URL: {e}") from None
            try:
                host = parse_web_url(value).host.strip("[]")
            except BadURL as e:  # read one way by the check, another by the client: refused
                raise PathRejected(Code.BAD_URL, f"not a URL that reads one way only: {e}") from None
            if source.allowed_hosts and host not in source.allowed_hosts:
                raise PathRejected(
                    Code.HOST_NOT_ALLOWED,
                    f"host '{host}' is not allowed for this source "
                    f"(allowed: {', '.join(sorted(source.allowed_hosts))})",
                )
        return value
    if storage.is_url(root):
        if value.startswith("/"):
            raise PathRejected(
                Code.OUTSIDE_ROOT, "absolute local path for a source whose audio root is a URL"
            )
        joined = posixpath.normpath(posixpath.join(root.split("://", 1)[1], value))
        full = f"{storage.scheme(root)}://{joined}"
        _require_inside_url(root, full)
        return full
    root_abs = os.path.abspath(root)
    full = os.path.normpath(value if os.path.isabs(value) else os.path.join(root_abs, value))
    if not _inside(full, root_abs):
        raise PathRejected(Code.OUTSIDE_ROOT, f"path '{value}' is outside the audio root")
    # Symlinks are resolved so that a link inside the root cannot point at a file outside it.
    real, real_root = os.path.realpath(full), _real_root(root_abs)
    if not _inside(real, real_root):
        raise PathRejected(
            Code.OUTSIDE_ROOT, f"path '{value}' resolves (through a link) outside the audio root"
        )
    return full


def check_still_inside(source: SourceSpec, path: str) -> None:
    """Re-check a local path right before it is read: a link swapped in after the manifest was
    read must not lead outside the root either. URLs were fully checked when resolved."""
    if storage.is_url(path) or storage.is_url(source.audio_root):
        return
    if not _inside(os.path.realpath(path), _real_root(os.path.abspath(source.audio_root))):
        raise PathRejected(
            Code.OUTSIDE_ROOT, "the audio path resolves (through a link) outside the audio root"
        )


@functools.lru_cache(maxsize=64)
def _real_root(root_abs: str) -> str:
    # A root does not move during a run; resolving it once per row doubled the manifest stage's cost.
    return os.path.realpath(root_abs)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _require_inside_url(root: str, url: str) -> None:
    r = root.split("://", 1)[1]
    u = posixpath.normpath(url.split("://", 1)[1])
    if not (u == r.rstrip("/") or u.startswith(r.rstrip("/") + "/")):
        raise PathRejected(Code.OUTSIDE_ROOT, f"URL '{url}' is outside the audio root '{root}'")
