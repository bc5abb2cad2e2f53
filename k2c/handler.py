"""The T5 model behind RunInference: loading (or a clear failure at start), batched beam search, the handler.

Beam 2.77's Hugging Face handler imports TensorFlow, so this is a small custom ``ModelHandler``.
``load_model`` returns a :class:`Captioner` object (not a tuple: RunInference wraps what it returns).
With ``large_model`` Beam keeps one Captioner per worker machine in a shared process and hands the
DoFns a proxy, so ``Captioner.generate`` takes and returns plain lists of strings.

Outputs do not depend on how Beam happens to batch: generation is beam search (no sampling), and each
batch is split into groups of inputs with the same token length, so no input is ever padded (padding
changes the floating-point sums of attention, and a near-tie between two beams could flip).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from clap_corpus.core.errors import ConfigError
from clap_corpus.core.extras import require_extra
from clap_corpus.k2c.config import K2CConfig
from clap_corpus.k2c.debias import bad_words_ids
from clap_corpus.k2c.presets import TINY_MODEL_NAME
from clap_corpus.transforms.inference import length_groups, load_error, pick_device

log = logging.getLogger(__name__)


class ModelUnavailable(ConfigError):
    """The K2C model cannot be loaded; the message says how to provide it."""


class Captioner:
    """A loaded tokenizer + seq2seq model with its generation settings."""

    def __init__(self, config: K2CConfig):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        # The weight-loading progress bar is one line per worker process in the job's logs; the
        # log line below says the same once.
        hf_logging.disable_progress_bar()
        self.device = pick_device(config.device)
        local_only = config.is_local or not config.download
        self.tokenizer = AutoTokenizer.from_pretrained(config.model_path, local_files_only=local_only)
        model = AutoModelForSeq2SeqLM.from_pretrained(config.model_path, local_files_only=local_only)
        self.model = model.to(self.device).eval()
        self.generation = config.generation.kwargs()
        self.bad_words = bad_words_ids(self.tokenizer) if config.debias else None
        self.max_input_tokens = 256
        self._torch = torch
        log.info(
            "K2C model %s loaded on %s (%d parameters, %d forbidden token sequences)",
            config.model,
            self.device,
            sum(p.numel() for p in model.parameters()),
            len(self.bad_words or []),
        )

    def generate(self, inputs: list[str]) -> list[str | None]:
        """Decoded text per input, in order; None for an input the model failed on."""
        encoded = [
            self.tokenizer(text, truncation=True, max_length=self.max_input_tokens)["input_ids"]
            for text in inputs
        ]
        out: list[str | None] = [None] * len(inputs)
        for idx in length_groups(len(ids) for ids in encoded):
            try:
                texts = self._generate_ids([encoded[i] for i in idx])
            except Exception:  # one bad input must not fail the batch: retry one by one
                log.exception("K2C generation failed for a batch of %d; retrying one by one", len(idx))
                texts = []
                for i in idx:
                    try:
                        texts.extend(self._generate_ids([encoded[i]]))
                    except Exception:
                        log.exception("K2C generation failed for %r", inputs[i][:200])
                        texts.append(None)
            for i, text in zip(idx, texts, strict=True):
                out[i] = text
        return out

    def _generate_ids(self, ids: list[list[int]]) -> list[str | None]:
        torch = self._torch
        x = torch.tensor(ids, dtype=torch.long, device=self.device)
        kwargs: dict[str, Any] = dict(self.generation)
        if self.bad_words:
            kwargs["bad_words_ids"] = self.bad_words
        with torch.inference_mode():
            y = self.model.generate(input_ids=x, attention_mask=torch.ones_like(x), **kwargs)
        return list(self.tokenizer.batch_decode(y, skip_special_tokens=True))

    def info(self) -> dict[str, Any]:
        return {"device": self.device, "forbidden_sequences": len(self.bad_words or [])}


class LazyCaptioner:
    """What RunInference holds: the model loads with the first batch of keyword sets.

    Beam loads a handler's model in ``DoFn.setup``, whether any element will come or not; a run in
    which every record has a caption of its own would load the weights for nothing, once per worker
    process. The lock: with ``large_model`` one object serves every thread of the worker."""

    def __init__(self, config: K2CConfig):
        self.config = config
        self._captioner: Captioner | None = None
        self._lock = threading.Lock()

    def generate(self, inputs: list[str]) -> list[str | None]:
        with self._lock:
            if self._captioner is None:
                self._captioner = load_captioner(self.config)
        return self._captioner.generate(inputs)


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_captioner(config: K2CConfig, spec_path: str = "") -> None:
    """At launch, before any worker starts: the model's config, tokenizer and weight files are there.

    Loads no weights (the workers do, when a record needs a caption); raises :class:`ModelUnavailable`
    saying how to provide the model, as :func:`load_captioner` does."""
    require_extra("k2c", "options.k2c (keyword-to-caption)")
    problem = _missing_files(config)
    if problem is None:
        from transformers import AutoConfig, AutoTokenizer

        local_only = config.is_local or not config.download
        try:
            AutoConfig.from_pretrained(config.model_path, local_files_only=local_only)
            AutoTokenizer.from_pretrained(config.model_path, local_files_only=local_only)
        except (OSError, ValueError) as e:
            problem = load_error(e)
    if problem is None and local_only and not _has_weights(config):
        problem = f"no weights ({' or '.join(WEIGHT_FILES[::2])}) for {config.model_path}"
    if problem is not None:
        raise ModelUnavailable(_how_to_provide(config, problem, spec_path))


def _has_weights(config: K2CConfig) -> bool:
    if config.is_local:
        return any(os.path.exists(os.path.join(config.model_path, f)) for f in WEIGHT_FILES)
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(config.model_path, f), str) for f in WEIGHT_FILES)


def load_captioner(config: K2CConfig, spec_path: str = "") -> Captioner:
    """Load the model, or raise :class:`ModelUnavailable` saying how to provide it (or
    :class:`~core.extras.MissingExtraError` naming the pip command when PyTorch is not installed)."""
    require_extra("k2c", "options.k2c (keyword-to-caption)")
    problem = _missing_files(config)
    if problem is None:
        try:
            return Captioner(config)
        except (OSError, ValueError) as e:
            problem = load_error(e)
    raise ModelUnavailable(_how_to_provide(config, problem, spec_path))


def _missing_files(config: K2CConfig) -> str | None:
    if not config.is_local:
        return None
    path = config.model_path
    if not os.path.isdir(path):
        return f"the folder {path} does not exist"
    if not os.path.exists(os.path.join(path, "config.json")):
        return f"the folder {path} has no config.json (not a saved Hugging Face model)"
    return None


def _how_to_provide(config: K2CConfig, problem: str, spec_path: str) -> str:
    where = f"{spec_path}: " if spec_path else ""
    lines = [
        f"{where}options.k2c.model: cannot load the keyword-to-caption model '{config.model}': {problem}"
    ]
    lines.append("Provide it in one of these ways:")
    if config.model == TINY_MODEL_NAME:
        lines.append(
            "  - the embedded demo model is missing from this installation: reinstall the package, or "
            "rebuild it with `python -m k2c.tiny.train`;"
        )
    elif not config.is_local:
        cache = os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")
        lines.append(
            f"  - on a machine with network, download it into the Hugging Face cache ({cache}): "
            f"`hf download {config.model}`; copy that cache to this machine (and into the worker image), "
            "or set options.k2c.download: true to let the run fetch it;"
        )
    lines.append(
        "  - or save the model with `save_pretrained` (config.json, weights, tokenizer files), copy the "
        "folder here and set options.k2c.model to its path;"
    )
    lines.append(
        f"  - or set options.k2c.model: {TINY_MODEL_NAME} for the embedded demo model (demo quality only);"
    )
    lines.append("  - or remove options.k2c (or set enabled: false) to keep the template captions.")
    return "\n".join(lines)


class K2CModelHandler(ModelHandler[str, PredictionResult, LazyCaptioner]):
    """Model inputs (formatted keyword text) in, raw decoded captions out; wrap it in KeyedModelHandler."""

    def __init__(self, config: K2CConfig):
        # max_batch_weight is not passed on purpose: setting it raises TypeError in Beam 2.77.
        super().__init__(
            min_batch_size=config.min_batch_size,
            max_batch_size=config.max_batch_size,
            large_model=config.large_model,
        )
        self.config = config

    def load_model(self) -> LazyCaptioner:
        return LazyCaptioner(self.config)

    def run_inference(
        self, batch: Sequence[str], model: LazyCaptioner, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        texts = model.generate(list(batch))
        return [PredictionResult(x, y, model_id=self.config.model) for x, y in zip(batch, texts, strict=True)]

    def get_metrics_namespace(self) -> str:
        return "k2c"
