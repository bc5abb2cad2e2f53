"""The building blocks of the corpus spec's model: field types that carry their own rule, the context a
spec load passes to the validators, and the translation of pydantic's errors into one line per problem.

The spec's models (pipeline/spec/corpus.py, k2c/config.py, manifests/source.py's SourceSpec,
transforms/sample.py's SampleOptions) are frozen pydantic dataclasses: each is at once the declaration
of its part of the spec (field, type, default, rule) and the value the pipeline ships to its workers.
Dataclasses rather than BaseModel because code and tests build and ``dataclasses.replace`` them.

Rules about what a user wrote (a name rule, a path relative to the spec's folder, an adapter's options)
run only while a spec is loaded, i.e. when the validation context is a :class:`LoadContext`. Code that
builds these objects directly gets types and ranges checked and nothing else: a test may hand an adapter
a split the spec would refuse, to show that the adapter refuses it too.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
)
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic_core import PydanticCustomError

from clap_corpus.core.layout import NAME_RULE_TEXT, UnsafeName, check_name

# Unknown fields are errors (a typo must not silently fall back to a default).
MODEL_CONFIG = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class LoadContext:
    """What the validators of a spec being loaded need to know about the spec file."""

    base_dir: str  # the spec's folder (a URL for a spec read from gs://...)
    resolve: Callable[[str], str]  # a path as written in the spec -> the path to read


def loading(info: ValidationInfo) -> LoadContext | None:
    """The load context when a spec is being loaded, else None (an object built in code)."""
    return info.context if isinstance(info.context, LoadContext) else None


def problem(message: str, at: str = "") -> PydanticCustomError:
    """An error whose message is final; ``at`` names a field below the validated one (``a.b``)."""
    return PydanticCustomError("spec", "{message}", {"message": message, "at": at})


def problems(errors: list[tuple[tuple[str | int, ...], PydanticCustomError]], title: str) -> ValidationError:
    """Several errors from one validator at once (each at its own place below the validated value)."""
    return ValidationError.from_exception_data(
        title, [{"type": error, "loc": loc, "input": None} for loc, error in errors]
    )


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a fraction between 0 and 1, got {value:g}")
    return value


def _dbfs(value: float) -> float:
    if value > 0:
        raise ValueError("a level in dBFS must not be above 0")
    return value


_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def _device(value: str) -> str:
    if not _DEVICE_RE.match(value):
        raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
    return value


# Strict scalars: YAML's `yes`, `"5"` or `1` for a switch are mistakes to report, not to coerce.
# Numbers are finite (YAML's .inf and .nan are refused) and bounded (issue 25): past these bounds no
# option means anything, and C timers, buffers and thread pools overflow before them.
MAX_SECONDS = 1_000_000.0  # ~11.6 days: any duration, timeout or wait
MAX_COUNT = 1_000_000  # any count of things at once (samples a shard, retries, beams, connections ...)
MAX_ROWS = 10**12  # a corpus's number of rows or samples
MAX_BYTES = 1 << 40  # a file size or a rate in bytes (1 TiB)
_FINITE = AllowInfNan(False)
Number = Annotated[float, Strict(), _FINITE]
Count = Annotated[int, Strict(), Field(ge=1, le=MAX_COUNT)]
Natural = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNT)]
Rows = Annotated[int, Strict(), Field(ge=0, le=MAX_ROWS)]
Bytes = Annotated[int, Strict(), Field(ge=1, le=MAX_BYTES)]
NonNegative = Annotated[float, Strict(), _FINITE, Field(ge=0)]
Seconds = Annotated[float, Strict(), _FINITE, Field(ge=0, le=MAX_SECONDS)]
PositiveSeconds = Annotated[float, Strict(), _FINITE, Field(gt=0, le=MAX_SECONDS)]
Fraction = Annotated[float, Strict(), _FINITE, AfterValidator(_fraction)]
Dbfs = Annotated[float, Strict(), _FINITE, AfterValidator(_dbfs)]
# where a model of the run (K2C, CLAP) runs: auto is CUDA when the worker has it
# (transforms/inference.py's pick_device)
Device = Annotated[str, Strict(), AfterValidator(_device)]


def ordered(low_name: str, low: float | None, high_name: str, high: float | None) -> None:
    """A pair of options that bound one thing from both sides: ``low`` must not exceed ``high``
    (None: unset). Raised at ``high_name``, naming both."""
    if low is not None and high is not None and low > high:
        raise problem(f"must not be below {low_name} ({low:g}), got {high:g}", high_name)


def _name_rule(kind: str) -> Callable[[str, ValidationInfo], str]:
    def check(value: str, info: ValidationInfo) -> str:
        if loading(info) is not None:
            try:
                check_name(kind, value)
            except UnsafeName:
                raise ValueError(f"{kind} name {value!r} must be {NAME_RULE_TEXT[kind]}") from None
        return value

    return check


CorpusName = Annotated[str, Strict(), AfterValidator(_name_rule("corpus"))]
SourceName = Annotated[str, Strict(), AfterValidator(_name_rule("source"))]
SplitName = Annotated[str, Strict(), AfterValidator(_name_rule("split"))]


def _proportions(value: Any, info: ValidationInfo) -> Any:
    """``{train: 0.9, ...}`` as written in a spec -> ``(("train", 0.9), ...)``; a tuple from code passes."""
    if isinstance(value, tuple):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of split name to share, got {type(value).__name__}")
    out = []
    split_rule = _name_rule("split")
    for name, share in value.items():
        if not isinstance(name, str):
            raise ValueError(f"split names must be text, got {name!r}")
        split_rule(name, info)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
            raise ValueError(f"proportion of '{name}' must be a number between 0 and 1, got {share!r}")
        out.append((name, float(share)))
    total = sum(share for _, share in out)
    if not out or abs(total - 1.0) > 1e-6:
        raise ValueError(f"proportions must sum to 1, they sum to {total:g}")
    return tuple(out)


# Split shares (a hash split for clips without a split of their own), as ordered (name, share) pairs.
Proportions = Annotated[tuple[tuple[SplitName, NonNegative], ...], BeforeValidator(_proportions)]


# --- pydantic's errors as one line per problem ----------------------------------------------------


def model_at(root: type, loc: Iterable[str | int]) -> type | None:
    """The model (pydantic dataclass) that the value at runtime location ``loc`` below ``root`` is."""
    cls: type | None = root
    for part in loc:
        if isinstance(part, int):
            continue  # an element of a tuple of models is that model
        fields = getattr(cls, "__pydantic_fields__", None)
        if not fields or part not in fields:
            return None
        cls = _model_in(fields[part].annotation)
    return cls


def _model_in(annotation: Any) -> type | None:
    if is_pydantic_dataclass(annotation):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def field_names(cls: type) -> list[str]:
    return list(getattr(cls, "__pydantic_fields__", {}))


_KINDS = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true/false",
    "string_type": "text",
    "dict_type": "a mapping",
    "mapping_type": "a mapping",
    "dataclass_type": "a mapping",
    "tuple_type": "a list",
    "list_type": "a list",
}


def _got(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return f"{type(value).__name__} ({value!r:.60})"


def describe(
    error: ValidationError,
    root: type,
    where: Callable[[tuple[str | int, ...]], str | None],
    document_fields: Callable[[type], Iterable[str]] = field_names,
) -> list[tuple[str, str]]:
    """(document path, message) for every problem in ``error``, raised validating a ``root``.

    ``where`` maps a runtime location to the path the user wrote (None: a problem reported elsewhere);
    ``document_fields`` gives the names a document may write for a model (the closest one is suggested
    for an unknown field). A missing field's ``description`` says what to write.
    """
    out = []
    for e in error.errors(include_url=False):
        loc, kind, ctx, value = tuple(e["loc"]), e["type"], e.get("ctx") or {}, e.get("input")
        if kind in ("missing", "missing_argument"):
            parent, name = loc[:-1], str(loc[-1])
            path = where(parent)
            info = getattr(model_at(root, parent), "__pydantic_fields__", {}).get(name)
            hint = info.description if info is not None else None
            message = f"missing required field '{name}'" + (f" ({hint})" if hint else "")
        else:
            path = where(loc)
            if kind in ("extra_forbidden", "unexpected_keyword_argument"):
                parent_model = model_at(root, loc[:-1])
                known = sorted(document_fields(parent_model)) if parent_model else []
                close = difflib.get_close_matches(str(loc[-1]), known, n=1)
                message = "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
            elif kind == "spec":
                message = ctx["message"]
                if ctx.get("at"):
                    path = f"{path}.{ctx['at']}" if path else ctx["at"]
            elif kind in _KINDS:
                message = f"expected {_KINDS[kind]}, got {_got(value)}"
            elif kind == "literal_error":
                choices = str(ctx["expected"]).replace("'", "").replace(" or ", ", ")
                message = f"must be one of {choices}, got {value!r}"
            elif kind == "greater_than_equal":
                least = ctx["ge"]
                message = "must not be negative" if least == 0 else f"must be at least {least}, got {value!r}"
            elif kind == "greater_than":
                message = f"must be above {ctx['gt']}, got {value!r}"
            elif kind == "less_than_equal":
                most = ctx["le"]
                most = int(most) if float(most).is_integer() else most
                message = f"must be at most {most}, got {value!r}"
            elif kind == "finite_number":
                message = f"must be a finite number, got {value!r}"
            elif kind == "value_error":
                message = str(ctx["error"])
            else:
                message = e["msg"]
        if path is not None:
            out.append((path, message))
    return out


def dotted(prefix: str, loc: Iterable[str | int]) -> str:
    """``options.k2c`` + ``("generation", "num_beams")`` -> ``options.k2c.generation.num_beams``;
    list positions as ``[i]``."""
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else (f"{path}.{part}" if path else str(part))
    return path
