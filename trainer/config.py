"""The trainer's configuration: what defines a model (checked on load) and what drives a run.

:class:`ModelConfig` is the architecture: a checkpoint can only be loaded into a model built from an
equal one, and :func:`config_diff` says which fields differ when it is not. :class:`TrainConfig` is
how a run reads data and optimises; changing it between a save and a resume is allowed, but the
fields in :data:`RESUME_SENSITIVE` change the batches or the schedule, so the resume is no longer
exact (a warning says which).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Audio encoder sizes. "htsat-tiny" and "htsat-base" are HTS-AT's published sizes (embed 96 / 128,
# depths 2-2-6-2 / 2-2-12-2, heads 4-8-16-32); the smaller ones exist for CPU runs and tests.
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

MAX_COUNT = 1_000_000  # any count (steps, epochs, samples, workers ...): past it no value means anything
MAX_SEED = 2**32 - 1  # numpy's and torch's seeds take it


class OptionError(ValueError):
    """A configuration value that cannot work; ``field`` is the config field (``lr``, ``audio.spec_size``),
    which the command line names by its option."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_range(
    field: str,
    value: float | None,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
) -> None:
    """Raise :class:`OptionError` unless ``value`` is a finite number in [low, high] (``low_open``:
    above low; ``high_open``: below high); None passes when ``optional``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OptionError(field, f"must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise OptionError(field, f"must be in {left}{_number(low)}, {_number(high)}{right}, got {value!r}")


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


CAPTION_SOURCES = ("text", "all", "k2c")  # LAION's --text-augment-selection none, all, augment_only
MEL_MODES = ("auto", "stored", "compute")
FORMATS = ("webdataset", "parquet")


@dataclass(frozen=True)
class AudioConfig:
    encoder: str = "htsat"  # "htsat" (Swin transformer) or "cnn" (small, for CPU runs)
    size: str = "tiny"  # a key of HTSAT_SIZES / CNN_SIZES
    fusion: bool = True  # attentional feature fusion of the three local views for `longer` clips
    window_size: int = 8  # Swin window (tokens per side)
    spec_size: int = 256  # HTS-AT's square input: 1024 frames x 64 bins folded into 256 x 256
    patch_size: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        sizes = HTSAT_SIZES if self.encoder == "htsat" else CNN_SIZES if self.encoder == "cnn" else None
        if sizes is None:
            raise ValueError(f"unknown audio encoder {self.encoder!r} (known: htsat, cnn)")
        if self.size not in sizes:
            raise ValueError(f"unknown {self.encoder} size {self.size!r} (known: {', '.join(sizes)})")
        check_range("audio.window_size", self.window_size, 1, 256)
        check_range("audio.spec_size", self.spec_size, 64, 4096)
        check_range("audio.patch_size", self.patch_size, 1, 256)
        check_range("audio.dropout", self.dropout, 0, 1, high_open=True)
        if self.encoder == "htsat":
            # HTS-AT folds 64 mel bins into a square of spec_size, cut into patches, then halves the
            # patch grid once per stage after the first.
            halvings = 2 ** (len(sizes[self.size]["depths"]) - 1)
            if self.spec_size % 64 or self.spec_size % (self.patch_size * halvings):
                step = self.patch_size * halvings
                message = f"must be a multiple of 64 and of patch_size x {halvings} ({step})"
                raise OptionError("audio.spec_size", message)


@dataclass(frozen=True)
class TextConfig:
    model: str = "roberta-base"  # a Hugging Face id, a local folder, or "tiny" (built from the corpus)
    max_length: int = 77  # LAION-CLAP's text length
    pooling: str = "auto"  # "pooler" | "cls" | "mean"; auto: the model's pooler when it has one
    # Size of the tiny encoder built when model == "tiny":
    tiny_hidden: int = 128
    tiny_layers: int = 2
    tiny_heads: int = 2
    tiny_vocab: int = 1000

    def __post_init__(self) -> None:
        if self.pooling not in ("auto", "pooler", "cls", "mean"):
            raise ValueError(f"unknown pooling {self.pooling!r} (known: auto, pooler, cls, mean)")
        check_range("text.max_length", self.max_length, 1, 512)  # the text encoders' positions
        check_range("text.tiny_hidden", self.tiny_hidden, 1, 4096)
        check_range("text.tiny_layers", self.tiny_layers, 1, 64)
        check_range("text.tiny_heads", self.tiny_heads, 1, 64)
        check_range("text.tiny_vocab", self.tiny_vocab, 1, MAX_COUNT)
        if self.tiny_hidden % self.tiny_heads:
            raise OptionError("text.tiny_hidden", f"must be a multiple of tiny_heads ({self.tiny_heads})")


@dataclass(frozen=True)
class ModelConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    joint_dim: int = 512  # the shared embedding space
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0  # the learnable 1/temperature is clamped to [1, 100] (LAION)

    def __post_init__(self) -> None:
        check_range("joint_dim", self.joint_dim, 1, 65536)
        check_range("init_temperature", self.init_temperature, 0, 1, low_open=True)
        check_range("max_logit_scale", self.max_logit_scale, 1, 1e6)
        if 1.0 / self.init_temperature > self.max_logit_scale:
            raise OptionError(
                "init_temperature",
                f"1 / init_temperature ({1.0 / self.init_temperature:g}) must not exceed max_logit_scale "
                f"({self.max_logit_scale:g}), where the scale is clamped",
            )

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelConfig:
        audio = _build(AudioConfig, d.get("audio", {}))
        text = _build(TextConfig, d.get("text", {}))
        rest = {k: v for k, v in d.items() if k not in ("audio", "text")}
        return _build(cls, {**rest, "audio": audio, "text": text})


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""  # a built corpus (the folder `clapcorpus run --output` wrote)
    output: str = "clap-run"
    corpus: str | None = None  # the corpus name under webdataset/; None: the only one there
    format: str = "webdataset"  # or "parquet"
    train_split: str = "train"
    eval_split: str | None = "valid"  # None: no evaluation
    caption_source: str = "text"  # "text" | "all" | "k2c": see trainer.data.draw_caption
    mel: str = "auto"  # auto: stored views when present, else computed on the device from the FLAC
    batch_size: int = 64  # per process
    grad_accum: int = 1  # micro-batches per optimizer step (negatives come from each micro-batch)
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    lr: float = 1e-4
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = None
    workers: int = 2
    shuffle_buffer: int = 1000
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    device: str = "auto"
    threads: int | None = None  # torch CPU threads for this run (None: torch's default)
    log_every: int = 10
    tensorboard: bool = False  # also log to <output>/tensorboard (TensorBoard event files)
    save_every: int | None = None  # steps between checkpoints; the last step is always saved
    eval_every_epochs: int = 1
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r} (known: {', '.join(FORMATS)})")
        if self.caption_source not in CAPTION_SOURCES:
            raise ValueError(f"caption_source must be one of {CAPTION_SOURCES}, got {self.caption_source!r}")
        if self.mel not in MEL_MODES:
            raise ValueError(f"mel must be one of {MEL_MODES}, got {self.mel!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        for name in ("batch_size", "grad_accum", "epochs", "log_every", "keep_checkpoints", "shuffle_buffer"):
            check_range(name, getattr(self, name), 1, MAX_COUNT)
        for name in ("warmup_steps", "eval_every_epochs"):  # eval_every_epochs 0: no evaluation
            check_range(name, getattr(self, name), 0, MAX_COUNT)
        for name in ("max_steps", "save_every", "threads"):
            check_range(name, getattr(self, name), 1, MAX_COUNT, optional=True)
        check_range("workers", self.workers, 0, 1024)
        check_range("seed", self.seed, 0, MAX_SEED)
        check_range("lr", self.lr, 0, 10, low_open=True)
        check_range("min_lr", self.min_lr, 0, self.lr)  # the cosine ends there, so it is below lr
        check_range("weight_decay", self.weight_decay, 0, 10)
        check_range("eps", self.eps, 0, 1, low_open=True)
        check_range("grad_clip", self.grad_clip, 0, 1e6, low_open=True, optional=True)
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise OptionError("betas", f"must be two numbers, got {self.betas!r}")
        for beta in self.betas:
            check_range("betas", beta, 0, 1, high_open=True)

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return _build(cls, d)


# Fields whose change between save and resume alters the batches or the schedule.
RESUME_SENSITIVE = (
    "data",
    "corpus",
    "format",
    "train_split",
    "caption_source",
    "batch_size",
    "grad_accum",
    "epochs",
    "max_steps",
    "lr",
    "weight_decay",
    "warmup_steps",
    "min_lr",
    "betas",
    "workers",
    "shuffle_buffer",
    "seed",
    "threads",  # CPU kernels may sum in another order with another thread count
)


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def _build(cls: type, d: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {', '.join(unknown)}")
    return cls(**d)


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
