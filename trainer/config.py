"""The trainer's configuration, declared once: what defines a model, what drives a run, and how the
command line writes each option.

:class:`ModelConfig` is the architecture: a checkpoint can only be loaded into a model built from an
equal one, and :func:`config_diff` says which fields differ when it is not. :class:`TrainConfig` is
how a run reads data and optimises; changing it between a save and a resume is allowed, but the
fields declared ``resume_sensitive`` (:data:`RESUME_SENSITIVE`) change the batches or the schedule, so
the resume is no longer exact (a warning says which). :class:`RunOptions` is what one ``train``
command does beyond its run's configuration (resume, stop early); a checkpoint does not store it.

The models are frozen pydantic dataclasses, as the corpus spec's are (core/config.py): each field is
declared once, its type carrying its rule (``Count``: an integer in [1, 10^6]; ``Within(0, 1)``), and
:func:`option` its default, its help and how ``clapcorpus train`` writes it (flag name, ``--help``
section, or no flag at all). trainer/cli.py derives the command line from these declarations, and
:func:`take` hands a run's values to the loaders' own configs by name. A value that cannot work raises
:class:`OptionError` naming the field (``lr``, ``audio.spec_size``), which the command line names by
its option.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import takewhile
from typing import Annotated, Any, Literal, TypeVar, cast, dataclass_transform, get_args

from pydantic import Field, Strict, ValidationError, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic.dataclasses import is_pydantic_dataclass
from pydantic_core import PydanticUndefined, core_schema

from clap_corpus.core.config import MODEL_CONFIG, describe, dotted, problem

# Audio encoder sizes; the first of each is the encoder's default. "htsat-tiny" and "htsat-base" are
# HTS-AT's published sizes (embed 96 / 128, depths 2-2-6-2 / 2-2-12-2, heads 4-8-16-32); the smaller
# ones exist for CPU runs and tests.
HTSAT_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (4, 8, 16, 32)},
    "base": {"embed_dim": 128, "depths": (2, 2, 12, 2), "num_heads": (4, 8, 16, 32)},
    "mini": {"embed_dim": 32, "depths": (1, 1, 2, 1), "num_heads": (1, 2, 4, 8)},
    "micro": {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2)},
}
CNN_SIZES: dict[str, dict[str, Any]] = {
    "small": {"channels": (16, 32, 64, 128)},
    "micro": {"channels": (8, 16, 32)},
}
ENCODER_SIZES = {"htsat": HTSAT_SIZES, "cnn": CNN_SIZES}

MAX_COUNT = 1_000_000  # any count (steps, epochs, samples, workers ...): past it no value means anything
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds take it

T = TypeVar("T")


class OptionError(ValueError):
    """A configuration value that cannot work; ``field`` is the config field (``lr``, ``audio.spec_size``),
    which the command line names by its option. ``problems``: every (field, message) found at once, the
    first of them ``field`` and ``message``."""

    def __init__(self, field: str, message: str, problems: list[tuple[str, str]] | None = None):
        self.problems = problems or [(field, message)]
        super().__init__("; ".join(f"{f}: {m}" for f, m in self.problems))
        self.field, self.message = field, message

    @classmethod
    def of(cls, error: ValidationError, model: type) -> OptionError:
        """pydantic's errors validating a ``model``, one line each, named by their field's path."""
        # a tuple's element is its field's (betas[1] is betas)
        found = describe(error, model, lambda loc: dotted("", takewhile(lambda p: isinstance(p, str), loc)))
        found = found or [("", str(error))]
        return cls(*found[0], found)


# --- the rules field types carry -----------------------------------------------------------------


def range_problem(
    value: Any, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> str | None:
    """What is wrong with ``value`` as a finite number in [low, high] (``low_open``: above low;
    ``high_open``: below high), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f"must be in {left}{_number(low)}, {_number(high)}{right}, got {value!r}"
    return None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


@dataclass(frozen=True)
class Within:
    """A number's range, carried by its field's type: ``Annotated[float, Strict(), Within(0, 1)]``."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: Any) -> str | None:
        return range_problem(value, self.low, self.high, low_open=self.low_open, high_open=self.high_open)

    def __get_pydantic_core_schema__(self, source: Any, handler: Callable[[Any], Any]) -> Any:
        def check(value: Any) -> Any:
            message = self.problem(value)
            if message:
                raise problem(message)
            return value

        return core_schema.no_info_after_validator_function(check, handler(source))


# Strict: a checkpoint's "64" or true for a count is a mistake to report, not to coerce (an int is a
# float, as in JSON).
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]
Switch = Annotated[bool, Strict()]
Count = Annotated[Int, Within(1, MAX_COUNT)]
Natural = Annotated[Int, Within(0, MAX_COUNT)]  # a count where 0 means none
Seed = Annotated[Int, Within(0, MAX_SEED)]
Beta = Annotated[Float, Within(0, 1, high_open=True)]

Encoder = Literal["htsat", "cnn"]
Pooling = Literal["auto", "pooler", "cls", "mean"]
Format = Literal["webdataset", "parquet"]
CaptionSource = Literal["text", "all", "k2c"]  # LAION's --text-augment-selection none, all, augment_only
MelMode = Literal["auto", "stored", "compute"]
Precision = Literal["auto", "fp32", "bf16"]
FORMATS: tuple[str, ...] = get_args(Format)
CAPTION_SOURCES: tuple[str, ...] = get_args(CaptionSource)
MEL_MODES: tuple[str, ...] = get_args(MelMode)


# --- how an option is declared -------------------------------------------------------------------

# The sections of `clapcorpus train --help`, in order; an option in none is among the command's own.
MODEL, OPTIMISATION, RUN = "model", "optimisation", "run"
GROUPS = (MODEL, OPTIMISATION, RUN)


@dataclass(frozen=True)
class Option:
    """What :func:`option` declares of a field besides its type (which carries its rule: choices, range)
    and its default: its help, and how the command line writes it (trainer/cli.py derives the flag)."""

    help: str
    group: str | None = None  # its section of `train --help` (GROUPS); None: the command's own
    flag: str | None = None  # the option's name when it is not the field's path (caption_source: captions)
    cli: bool = True  # False: no flag sets it (said on purpose; tests hold every other field to a flag)
    required: bool = False  # on the command line (code may leave it at its default)
    none: str | None = None  # the word the command line writes for None (eval_split: none)
    off: str | None = None  # a switch on by default: the help of its --no-<name> flag
    resume_sensitive: bool = False  # changed between save and resume, it alters the batches or schedule


def option(
    default: Any = PydanticUndefined,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | None = None,
    **how: Any,
) -> Any:
    """A field's default, its help (also its description in the model's schema) and how the command
    line writes it (:class:`Option`'s fields)."""
    if default_factory is None:
        info = Field(default, description=help)
    else:
        info = Field(default_factory=default_factory, description=help)
    info.metadata.append(Option(help, **how))
    return info


# `option` is no field specifier here: a type checker reads a specifier's default from a `default=`
# keyword only, and the options give theirs positionally; read as a plain default, `option(...)` says
# what holds, that every field has one.
@dataclass_transform(frozen_default=True, field_specifiers=(Field,))
def config_model(cls: type[T]) -> type[T]:
    """A frozen pydantic dataclass whose constructor raises :class:`OptionError` naming the field."""
    model = pydantic_dataclass(frozen=True, config=MODEL_CONFIG)(cls)
    validate = model.__init__

    @functools.wraps(validate)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            validate(self, *args, **kwargs)
        except ValidationError as e:
            raise OptionError.of(e, model) from None

    model.__init__ = __init__  # type: ignore[method-assign]
    return cast(type[T], model)  # cls itself, made a pydantic dataclass (pydantic's type says no more)


@dataclass(frozen=True)
class Declared:
    """One option of a model as :func:`declared` reads it: a leaf field, nested models walked into."""

    path: str  # the config field: lr, audio.encoder
    option: Option
    kind: type  # the value's type, without None: int, float, str, bool, tuple
    choices: tuple[str, ...] | None  # a Literal's values
    default: Any

    @property
    def name(self) -> str:
        """The command line's name (without the dashes, without a switch's ``no-``)."""
        return self.option.flag or self.path.replace(".", "-").replace("_", "-")


def declared(model: type, prefix: str = "") -> Iterator[Declared]:
    """Every leaf option of ``model`` in declaration order, with its path below ``prefix``."""
    for name, info in model.__pydantic_fields__.items():  # type: ignore[attr-defined]
        found = [m for m in info.metadata if isinstance(m, Option)]
        if not found:
            raise TypeError(f"{model.__name__}.{name} is not declared with option()")
        types_ = _admits(info.annotation)
        nested = [t for t in types_ if is_pydantic_dataclass(t)]
        if nested:
            yield from declared(nested[0], f"{prefix}{name}.")
            continue
        literal = [t for t in types_ if typing.get_origin(t) is Literal]
        kind = str if literal else next(t for t in types_ if t is not type(None))
        yield Declared(
            path=prefix + name,
            option=found[0],
            kind=typing.get_origin(kind) or kind,
            choices=get_args(literal[0]) if literal else None,
            default=info.get_default(call_default_factory=True),
        )


def _admits(annotation: Any) -> list[Any]:
    """The types an annotation admits (Optional, unions and Annotated taken apart)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _admits(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in get_args(annotation) for t in _admits(a)]
    return [annotation]


class _Config:
    """A checkpoint's config.json holds a model as :meth:`to_json` writes it (nested models as
    objects, tuples as lists)."""

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_json(cls: type[T], d: dict[str, Any]) -> T:
        return cls(**d)


def take(cls: type[T], source: object, **given: Any) -> T:
    """A ``cls`` dataclass whose fields take ``source``'s values of the same names, but for ``given``:
    a loader's config from a run's without a field-by-field copy (a name ``source`` lacks is an error)."""
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in given]  # type: ignore[arg-type]
    return cls(**{name: getattr(source, name) for name in names}, **given)


# --- the models ----------------------------------------------------------------------------------

_SIZES_HELP = "; ".join(  # htsat: tiny (default), base, mini, micro; cnn: ...
    f"{encoder}: {first} (default), {', '.join(rest)}" for encoder, (first, *rest) in ENCODER_SIZES.items()
)


@config_model
class AudioConfig(_Config):
    encoder: Encoder = option("htsat", "LAION-CLAP's HTS-AT or a small CNN", group=MODEL)
    size: str | None = option(
        None, _SIZES_HELP, group=MODEL
    )  # None: the encoder's first, set on construction
    fusion: Switch = option(
        True,
        "attentional feature fusion of the three local views for `longer` clips",
        group=MODEL,
        flag="fusion",
        off="global view only (no attentional feature fusion)",
    )
    window_size: Annotated[Int, Within(1, 256)] = option(8, "Swin window (tokens per side)", cli=False)
    spec_size: Annotated[Int, Within(64, 4096)] = option(
        256, "HTS-AT's square input: 1024 frames x 64 bins folded into 256 x 256", cli=False
    )
    patch_size: Annotated[Int, Within(1, 256)] = option(4, "HTS-AT's patch side", cli=False)
    dropout: Annotated[Float, Within(0, 1, high_open=True)] = option(0.0, "in the audio encoder", cli=False)

    @model_validator(mode="after")
    def _size_fits(self) -> AudioConfig:
        sizes = ENCODER_SIZES[self.encoder]
        if self.size is None:
            object.__setattr__(self, "size", next(iter(sizes)))  # still being built
        elif self.size not in sizes:
            raise problem(f"unknown {self.encoder} size {self.size!r} (known: {', '.join(sizes)})", "size")
        assert self.size is not None  # set just above when it was None
        if self.encoder == "htsat":
            # HTS-AT folds 64 mel bins into a square of spec_size, cut into patches, then halves the
            # patch grid once per stage after the first.
            halvings = 2 ** (len(sizes[self.size]["depths"]) - 1)
            if self.spec_size % 64 or self.spec_size % (self.patch_size * halvings):
                step = self.patch_size * halvings
                message = f"must be a multiple of 64 and of patch_size x {halvings} ({step})"
                raise problem(message, "spec_size")
        return self

    @property
    def shape(self) -> dict[str, Any]:
        """The encoder's size: HTSAT_SIZES' or CNN_SIZES' entry."""
        return ENCODER_SIZES[self.encoder][self.size or ""]


@config_model
class TextConfig(_Config):
    model: str = option(
        "roberta-base", "Hugging Face id or folder, or 'tiny' (built from the corpus captions)", group=MODEL
    )
    # 77: LAION-CLAP's; at most 512, the text encoders' positions
    max_length: Annotated[Int, Within(1, 512)] = option(77, "caption tokens kept", group=MODEL)
    pooling: Pooling = option(
        "auto", "pooler | cls | mean; auto: the model's pooler when it has one", cli=False
    )
    # Size of the tiny encoder built when model == "tiny":
    tiny_hidden: Annotated[Int, Within(1, 4096)] = option(128, "tiny: hidden size", cli=False)
    tiny_layers: Annotated[Int, Within(1, 64)] = option(2, "tiny: layers", cli=False)
    tiny_heads: Annotated[Int, Within(1, 64)] = option(2, "tiny: attention heads", cli=False)
    tiny_vocab: Count = option(1000, "tiny: vocabulary", cli=False)

    @model_validator(mode="after")
    def _heads_divide(self) -> TextConfig:
        if self.tiny_hidden % self.tiny_heads:
            raise problem(f"must be a multiple of tiny_heads ({self.tiny_heads})", "tiny_hidden")
        return self


@config_model
class ModelConfig(_Config):
    audio: AudioConfig = option(help="the audio encoder", default_factory=AudioConfig)
    text: TextConfig = option(help="the text encoder", default_factory=TextConfig)
    joint_dim: Annotated[Int, Within(1, 65536)] = option(512, "size of the shared embedding", group=MODEL)
    init_temperature: Annotated[Float, Within(0, 1, low_open=True)] = option(
        0.07, "the contrastive loss's temperature at the start", cli=False
    )
    max_logit_scale: Annotated[Float, Within(1, 1e6)] = option(
        100.0, "the learnable 1 / temperature is clamped to [1, this] (LAION: 100)", cli=False
    )

    @model_validator(mode="after")
    def _scale_fits(self) -> ModelConfig:
        if 1.0 / self.init_temperature > self.max_logit_scale:
            raise problem(
                f"1 / init_temperature ({1.0 / self.init_temperature:g}) must not exceed max_logit_scale "
                f"({self.max_logit_scale:g}), where the scale is clamped",
                "init_temperature",
            )
        return self


@config_model
class TrainConfig(_Config):
    # Reading the corpus
    data: str = option(
        "", "a built corpus: the folder `clapcorpus run --output` wrote", required=True, resume_sensitive=True
    )
    output: str = option("clap-run", "run folder: checkpoints, logs")
    corpus: str | None = option(  # None: the only one under webdataset/
        None, "corpus name (default: from summary.json)", resume_sensitive=True
    )
    format: Format = option("webdataset", "which shards to read", resume_sensitive=True)
    mel: MelMode = option(
        "auto",
        "auto: the stored views (in the tars, or the sidecar views shards of formats: views), else computed "
        "on the device from the FLAC; stored: only samples with stored views; compute: always from the FLAC",
    )
    workers: Annotated[Int, Within(0, 1024)] = option(
        2, "data-loader processes (0: in the main process)", resume_sensitive=True
    )
    device: str = option("auto", "auto: CUDA when there is one, else CPU")
    train_split: str = option("train", "split trained on", resume_sensitive=True)
    eval_split: str | None = option("valid", "split evaluated after each epoch; 'none' for none", none="none")
    caption_source: CaptionSource = option(  # see trainer.data.draw_caption
        "text",
        "text: one of `text` per epoch (LAION's --text-augment-selection none); all: one of "
        "`text_augment_all` (captions plus the K2C one) where present; k2c: the K2C caption where there "
        "is one",
        flag="captions",
        resume_sensitive=True,
    )
    # Optimisation
    batch_size: Count = option(64, "per process", group=OPTIMISATION, resume_sensitive=True)
    grad_accum: Count = option(  # negatives come from each micro-batch
        1, "batches per optimizer step", group=OPTIMISATION, resume_sensitive=True
    )
    epochs: Count = option(1, "passes over the train split", group=OPTIMISATION, resume_sensitive=True)
    max_steps: Count | None = option(
        None, "optimizer steps (overrides --epochs)", group=OPTIMISATION, resume_sensitive=True
    )
    lr: Annotated[Float, Within(0, 10, low_open=True)] = option(
        1e-4, "peak learning rate (AdamW)", group=OPTIMISATION, resume_sensitive=True
    )
    weight_decay: Annotated[Float, Within(0, 10)] = option(
        0.1, "AdamW weight decay", group=OPTIMISATION, resume_sensitive=True
    )
    warmup_steps: Natural = option(
        100, "linear warm-up, then cosine decay", group=OPTIMISATION, resume_sensitive=True
    )
    min_lr: Annotated[Float, Within(0, 10)] = option(  # and at most lr (_min_lr_below_lr)
        0.0, "learning rate at the end of the cosine (<= --lr)", group=OPTIMISATION, resume_sensitive=True
    )
    betas: tuple[Beta, Beta] = option((0.9, 0.999), "AdamW's betas", cli=False, resume_sensitive=True)
    eps: Annotated[Float, Within(0, 1, low_open=True)] = option(1e-8, "AdamW's epsilon", cli=False)
    grad_clip: Annotated[Float, Within(0, 1e6, low_open=True)] | None = option(
        None, "clip gradients to this norm (default: off)", group=OPTIMISATION
    )
    shuffle_buffer: Count = option(
        1000, "samples per worker (~0.5 MB each with stored mel)", group=OPTIMISATION, resume_sensitive=True
    )
    seed: Seed = option(
        0, "initialisation, shuffling and caption draws", group=OPTIMISATION, resume_sensitive=True
    )
    precision: Precision = option("auto", "auto: bf16 autocast on CUDA", group=OPTIMISATION)
    # The run
    threads: Count | None = option(
        None,
        "torch CPU threads (default: torch's choice); on a busy or small CPU, 1 is often fastest",
        group=RUN,
        resume_sensitive=True,  # CPU kernels may sum in another order with another thread count
    )
    log_every: Count = option(10, "steps between log lines", group=RUN)
    tensorboard: Switch = option(
        False,
        "also write loss, learning rate, logit scale / temperature and eval metrics as TensorBoard event "
        "files under <output>/tensorboard (needs the tensorboard package: the trainer extra)",
        group=RUN,
    )
    save_every: Count | None = option(
        None, "steps between checkpoints (the last step is always saved)", group=RUN
    )
    keep_checkpoints: Count = option(2, "newest checkpoints kept on disk", group=RUN)
    eval_every_epochs: Natural = option(1, "epochs between evaluations (0: none)", group=RUN)

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> TrainConfig:
        message = range_problem(self.min_lr, 0, self.lr)  # the cosine ends there, so it is below lr
        if message:
            raise problem(message, "min_lr")
        return self


@config_model
class RunOptions:
    """What one ``train`` command does beyond its run's configuration; not stored in a checkpoint."""

    resume: str | None = option(
        None, "checkpoint or run folder, or 'auto' (newest under --output)", group=RUN
    )
    stop_at_step: Count | None = option(
        None, "stop and save there; the schedule still spans the whole run", group=RUN
    )


# Fields whose change between save and resume alters the batches or the schedule.
RESUME_SENSITIVE = tuple(d.path for d in declared(TrainConfig) if d.option.resume_sensitive)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Readable differences between two JSON configs: ``["audio.size: 'tiny' != 'mini'", ...]``."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_diff(va, vb, f"{prefix}{k}."))
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} != {vb!r}")
    return out
