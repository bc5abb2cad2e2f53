"""The spec's ``options.k2c`` section: :class:`K2CConfig` is its declaration and its runtime value.

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

The spec loader (pipeline/spec/corpus.py) validates the section as part of the whole spec and checks it
against the rest (the sources it names exist, its caption cap is within the corpus's). :func:`parse_k2c`
validates the section on its own, for code and tests that have no spec.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from clap_corpus.core.config import (
    MODEL_CONFIG,
    Count,
    Device,
    LoadContext,
    Natural,
    Number,
    Seconds,
    describe,
    dotted,
    field_names,
    loading,
    problem,
)
from clap_corpus.core.errors import ConfigError
from clap_corpus.k2c.presets import (
    GENERATION_DEFAULTS,
    PRESETS,
    TINY_MODEL_DIR,
    TINY_MODEL_NAME,
    infer_preset,
)

Mode = Literal["replace", "join", "off"]
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Set by validation from `model`, never written in a spec.
DERIVED_FIELDS = ("model_path", "is_local")


class K2CConfigError(ConfigError):
    """A wrong ``options.k2c`` field; each line starts with the dotted field name."""


def _yaml_off(mode: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false; that is what the user wrote."""
    return "off" if mode is False else mode


def _overrides(value: Any) -> Any:
    """``{audioset: replace}`` as written in a spec -> sorted (source, mode) pairs; a tuple from code
    passes."""
    if not isinstance(value, Mapping):
        return value
    out = []
    for name, mode in value.items():
        mode = _yaml_off(mode)
        if mode not in ("replace", "join", "off"):
            raise ValueError(f"mode of {name!r} must be one of replace, join, off, got {mode!r}")
        out.append((str(name), mode))
    return tuple(sorted(out))


@dataclass(frozen=True, config=MODEL_CONFIG)
class GenerationOptions:
    num_beams: Count = int(GENERATION_DEFAULTS["num_beams"])
    length_penalty: Annotated[Number, Field(ge=-100, le=100)] = float(GENERATION_DEFAULTS["length_penalty"])
    no_repeat_ngram_size: Natural = int(GENERATION_DEFAULTS["no_repeat_ngram_size"])
    early_stopping: StrictBool = bool(GENERATION_DEFAULTS["early_stopping"])
    max_new_tokens: Count = int(GENERATION_DEFAULTS["max_new_tokens"])

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


@dataclass(frozen=True, config=MODEL_CONFIG)
class K2CConfig:
    # as written in the spec
    model: StrictStr = Field(
        description="a Hugging Face hub id such as gagan3012/k2t-base, a local model folder, "
        f"or '{TINY_MODEL_NAME}' for the embedded demo model"
    )
    model_path: StrictStr = ""  # what from_pretrained gets: the resolved folder, or the hub id
    is_local: StrictBool = False
    preset: Literal["auto", "k2t", "common_gen"] = "auto"  # never `auto` after validation
    mode: Annotated[Mode, BeforeValidator(_yaml_off)] = "join"
    # (source name, mode) overrides, sorted
    sources: Annotated[tuple[tuple[str, Mode], ...], BeforeValidator(_overrides)] = ()
    min_clip_seconds: Seconds = 2.0
    generation: GenerationOptions = Field(default_factory=GenerationOptions)
    min_batch_size: Count = 1
    max_batch_size: Count = 32
    max_keywords: Count = 10
    max_keyword_chars: Count = 48
    max_caption_chars: Count = 200
    dedup: StrictBool = True
    debias: StrictBool = True
    device: Device = "auto"
    large_model: StrictBool = True
    download: StrictBool = False
    enabled: StrictBool = True  # false: the section stays in the spec, K2C is off (the spec's k2c is None)

    def mode_for(self, source: str) -> str:
        return dict(self.sources).get(source, self.mode)

    @field_validator("model")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _resolve(self, info: ValidationInfo) -> K2CConfig:
        if not self.model_path:
            context = loading(info)
            model_path, is_local = resolve_model(self.model, context.base_dir if context else ".")
            if not is_local and not _HUB_ID_RE.match(self.model):
                raise problem(
                    f"{self.model!r} is neither an existing folder nor a hub id like 'owner/name'", "model"
                )
            # still being built: the only moment a frozen dataclass takes a value
            object.__setattr__(self, "model_path", model_path)
            object.__setattr__(self, "is_local", is_local)
        if self.preset == "auto":
            guessed = infer_preset(self.model)
            if guessed is None:
                raise problem(
                    f"cannot tell the input format of {self.model!r} from its name: set preset to one of "
                    f"{', '.join(PRESETS)}",
                    "preset",
                )
            object.__setattr__(self, "preset", guessed)
        if self.max_batch_size < self.min_batch_size:
            raise problem(
                f"must be at least min_batch_size ({self.min_batch_size}), got {self.max_batch_size}",
                "max_batch_size",
            )
        return self


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


def derived_fields_in(raw: Any) -> list[str]:
    """The fields of ``raw`` (a k2c section as written) that validation sets and a spec may not."""
    return [name for name in DERIVED_FIELDS if isinstance(raw, Mapping) and name in raw]


def document_fields(cls: type) -> list[str]:
    """The names a spec may write in the section that ``cls`` (K2CConfig or a part of it) declares."""
    return [n for n in field_names(cls) if n not in DERIVED_FIELDS]


_ADAPTER: TypeAdapter[K2CConfig] = TypeAdapter(K2CConfig)


def parse_k2c(
    raw: Any, *, sources: Iterable[str], base_dir: str = ".", where: str = "options.k2c"
) -> K2CConfig | None:
    """The section ``raw`` validated; None when it is switched off (``enabled: false``). Raises one
    :class:`K2CConfigError` naming every problem, one per line."""
    lines = [f"{where}.{name}: unknown field" for name in derived_fields_in(raw)]
    config = None
    try:
        config = _ADAPTER.validate_python(document(raw), context=LoadContext(base_dir=base_dir, resolve=str))
    except ValidationError as e:
        found = describe(e, K2CConfig, lambda loc: dotted(where, loc), document_fields)
        lines += [f"{path}: {message}" for path, message in found]
    if config is not None:
        known = set(sources)
        lines += [f"{where}.sources: {m}" for m in unknown_source_problems(config, known)]
    if lines:
        raise K2CConfigError("\n".join(lines))
    return config if config is not None and config.enabled else None


def unknown_source_problems(config: K2CConfig, known: set[str]) -> list[str]:
    return [f"no source named {name!r} in the spec" for name, _ in config.sources if name not in known]


def document(raw: Any) -> Any:
    """The section as the model reads it: an empty field (``dedup:``) is an absent one, and the derived
    fields (reported by :func:`derived_fields_in`) are left out."""
    if not isinstance(raw, Mapping):
        return raw
    out = {k: v for k, v in raw.items() if v is not None and k not in DERIVED_FIELDS}
    if isinstance(out.get("generation"), Mapping):
        out["generation"] = {k: v for k, v in out["generation"].items() if v is not None}
    return out
