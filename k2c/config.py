"""The spec's ``options.k2c`` section, validated into :class:`K2CConfig`.

    options:
      k2c:
        model: tiny                 # required: a hub id, a local model folder, or `tiny` (the demo model)
        preset: auto                # k2t | common_gen | auto (from the model name)
        mode: join                  # default per source: replace | join | off
        sources: {audioset: replace}  # per-source override (LAION used only K2C captions for AudioSet)
        min_clip_seconds: 2.0       # shorter clips keep their template caption (LAION: 2 s)
        generation: {num_beams: 4, length_penalty: 1.5, no_repeat_ngram_size: 3,
                     early_stopping: true, max_new_tokens: 48}
        min_batch_size: 1
        max_batch_size: 32
        max_keywords: 10            # longer keyword lists are cut (in source order) before sorting
        max_keyword_chars: 48
        max_caption_chars: 200      # a longer caption falls back to the template
        dedup: true                 # one generation per distinct keyword set
        debias: true
        device: auto                # auto (CUDA when the worker has it) | cpu | cuda | cuda:N
        large_model: true           # one model per worker machine, shared by its processes
        download: false             # allow fetching a hub id from the network (never in tests)
        enabled: true

This module imports nothing from ``pipeline`` (the spec parser imports it); errors are
:class:`K2CConfigError` with the dotted field name, which the parser turns into a ``SpecError``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from k2c.presets import GENERATION_DEFAULTS, PRESETS, TINY_MODEL_DIR, TINY_MODEL_NAME, infer_preset

MODES = ("replace", "join", "off")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class K2CConfigError(ValueError):
    """A wrong ``options.k2c`` field; the message starts with the dotted field name."""


@dataclass(frozen=True)
class GenerationOptions:
    num_beams: int = int(GENERATION_DEFAULTS["num_beams"])
    length_penalty: float = float(GENERATION_DEFAULTS["length_penalty"])
    no_repeat_ngram_size: int = int(GENERATION_DEFAULTS["no_repeat_ngram_size"])
    early_stopping: bool = bool(GENERATION_DEFAULTS["early_stopping"])
    max_new_tokens: int = int(GENERATION_DEFAULTS["max_new_tokens"])

    def kwargs(self) -> dict[str, Any]:
        # Beam search only, never sampling: the same input gives the same caption on every run.
        return {
            "num_beams": self.num_beams,
            "length_penalty": self.length_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
            "early_stopping": self.early_stopping,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
        }


@dataclass(frozen=True)
class K2CConfig:
    model: str  # as written in the spec (hub id, folder, or "tiny")
    model_path: str  # what from_pretrained gets: the resolved folder, or the hub id
    is_local: bool
    preset: str
    mode: str = "join"
    sources: tuple[tuple[str, str], ...] = ()  # (source name, mode) overrides, sorted
    min_clip_seconds: float = 2.0
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    min_batch_size: int = 1
    max_batch_size: int = 32
    max_keywords: int = 10
    max_keyword_chars: int = 48
    max_caption_chars: int = 200
    dedup: bool = True
    debias: bool = True
    device: str = "auto"
    large_model: bool = True
    download: bool = False

    def mode_for(self, source: str) -> str:
        return dict(self.sources).get(source, self.mode)


class _Section:
    def __init__(self, data: Any, where: str):
        if not isinstance(data, Mapping):
            raise K2CConfigError(f"{where}: must be a mapping, got {type(data).__name__}")
        self.data, self.where, self.used = data, where, set()

    def err(self, key: str, msg: str) -> K2CConfigError:
        return K2CConfigError(f"{self.where}.{key}: {msg}")

    def get(self, key: str, types: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        value = self.data.get(key)
        if value is None:
            return default
        ts = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in ts:
            raise self.err(key, f"expected {_names(ts)}, got a boolean")
        if not isinstance(value, ts):
            raise self.err(key, f"expected {_names(ts)}, got {type(value).__name__} ({value!r:.60})")
        return value

    def number(self, key: str, default: float, *, minimum: float, integer: bool = False) -> Any:
        value = self.get(key, int if integer else (int, float), default)
        if value < minimum:
            raise self.err(key, f"must be at least {minimum:g}, got {value!r}")
        return value if integer else float(value)

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise K2CConfigError(f"{self.where}: unknown field(s) {', '.join(unknown)}")


def _names(ts: Iterable[type]) -> str:
    names = {int: "an integer", float: "a number", str: "text", bool: "true/false", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in ts)


def _yaml_off(mode: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false; that is what the user wrote."""
    return "off" if mode is False else mode


def resolve_model(model: str, base_dir: str) -> tuple[str, bool]:
    """(what from_pretrained gets, whether it is a local folder).

    ``tiny`` is the embedded model; an existing folder (absolute, or relative to the spec's folder) or
    anything starting with ``.``, ``/`` or ``~`` is a local folder; anything else is a hub id.
    """
    if model == TINY_MODEL_NAME:
        return TINY_MODEL_DIR, True
    expanded = os.path.expanduser(model)
    candidate = expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base_dir, expanded))
    if os.path.isdir(candidate) or model.startswith((".", "/", "~")):
        return candidate, True
    return model, False


def parse_k2c(
    raw: Any, *, sources: Iterable[str], base_dir: str = ".", where: str = "options.k2c"
) -> K2CConfig | None:
    """Validate the section; None when it is switched off (``enabled: false``)."""
    f = _Section(raw, where)
    enabled = f.get("enabled", bool, True)
    model = f.get("model", str, None)
    if model is None:
        raise K2CConfigError(
            f"{where}: missing required field 'model' (a Hugging Face hub id such as gagan3012/k2t-base, "
            f"a local model folder, or '{TINY_MODEL_NAME}' for the embedded demo model)"
        )
    model = model.strip()
    model_path, is_local = resolve_model(model, base_dir)
    if not is_local and not _HUB_ID_RE.match(model):
        raise f.err("model", f"{model!r} is neither an existing folder nor a hub id like 'owner/name'")
    preset = f.get("preset", str, "auto")
    if preset == "auto":
        guessed = infer_preset(model)
        if guessed is None:
            raise f.err(
                "preset",
                f"cannot tell the input format of {model!r} from its name: set preset to one of "
                f"{', '.join(PRESETS)}",
            )
        preset = guessed
    elif preset not in PRESETS:
        raise f.err("preset", f"unknown preset {preset!r} (known: auto, {', '.join(PRESETS)})")
    mode = _yaml_off(f.get("mode", (str, bool), "join"))
    if mode not in MODES:
        raise f.err("mode", f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    known_sources = set(sources)
    overrides = []
    for name, m in f.get("sources", dict, {}).items():
        m = _yaml_off(m)
        if name not in known_sources:
            raise f.err("sources", f"no source named {name!r} in the spec")
        if m not in MODES:
            raise f.err("sources", f"mode of {name!r} must be one of {', '.join(MODES)}, got {m!r}")
        overrides.append((str(name), m))
    gen = _Section(f.get("generation", dict, {}), f"{where}.generation")
    generation = GenerationOptions(
        num_beams=gen.number("num_beams", GenerationOptions.num_beams, minimum=1, integer=True),
        length_penalty=gen.number("length_penalty", GenerationOptions.length_penalty, minimum=-1e9),
        no_repeat_ngram_size=gen.number(
            "no_repeat_ngram_size", GenerationOptions.no_repeat_ngram_size, minimum=0, integer=True
        ),
        early_stopping=gen.get("early_stopping", bool, GenerationOptions.early_stopping),
        max_new_tokens=gen.number(
            "max_new_tokens", GenerationOptions.max_new_tokens, minimum=1, integer=True
        ),
    )
    gen.done()
    min_batch = f.number("min_batch_size", 1, minimum=1, integer=True)
    max_batch = f.number("max_batch_size", 32, minimum=1, integer=True)
    if max_batch < min_batch:
        raise f.err("max_batch_size", f"must be at least min_batch_size ({min_batch}), got {max_batch}")
    device = f.get("device", str, "auto")
    if not _DEVICE_RE.match(device):
        raise f.err("device", f"expected auto, cpu, cuda or cuda:N, got {device!r}")
    config = K2CConfig(
        model=model,
        model_path=model_path,
        is_local=is_local,
        preset=preset,
        mode=mode,
        sources=tuple(sorted(overrides)),
        min_clip_seconds=f.number("min_clip_seconds", 2.0, minimum=0.0),
        generation=generation,
        min_batch_size=min_batch,
        max_batch_size=max_batch,
        max_keywords=f.number("max_keywords", 10, minimum=1, integer=True),
        max_keyword_chars=f.number("max_keyword_chars", 48, minimum=1, integer=True),
        max_caption_chars=f.number("max_caption_chars", 200, minimum=1, integer=True),
        dedup=f.get("dedup", bool, True),
        debias=f.get("debias", bool, True),
        device=device,
        large_model=f.get("large_model", bool, True),
        download=f.get("download", bool, False),
    )
    f.done()
    return config if enabled else None
