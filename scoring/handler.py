"""The CLAP model behind RunInference: a Hugging Face ``ClapModel`` or a checkpoint of our own trainer.

Here, in the pipeline layer, because loading a trainer checkpoint imports the trainer, which the
K2C layer may not. ``load_model`` returns an :class:`Embedder` (one per worker machine with
``large_model``); ``Embedder.embed`` takes and returns plain arrays, so Beam's shared-model proxy
passes them through.

Batches are cut into chunks of one fixed shape (EMBED_CHUNK clips, captions grouped by token length),
the last chunk padded with copies, and on CPU the model runs on one thread: a clip's embedding then
never depends on how Beam happened to batch it, on ``max_batch_size`` or on the worker's cores (a CPU
kernel's summation order depends on the shapes and the threads it is given; measured: chunks of 16 or
32 and two threads each changed bytes that chunks of 4 and 8 on one thread did not).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from clap_corpus.core.errors import ConfigError
from clap_corpus.scoring.config import ClapConfig
from clap_corpus.scoring.scores import ClapInput, unfused_view
from clap_corpus.transforms.inference import length_groups, load_error, pick_device

log = logging.getLogger(__name__)

EMBED_CHUNK = 8  # clips (or captions) per model call, whatever max_batch_size Beam batches by


class ClapModelUnavailable(ConfigError):
    """The CLAP model cannot be loaded; the message says how to provide it."""


def _pooled(out: Any) -> Any:
    # transformers 5 returns a model output whose pooler_output is the normalised projection
    return out.pooler_output if hasattr(out, "pooler_output") else out


class Embedder:
    """A loaded CLAP model: audio views -> audio embeddings, captions -> text embeddings (L2-normalised)."""

    def __init__(self, config: ClapConfig):
        import torch

        self._torch = torch
        self.device = pick_device(config.device)
        self.chunk = EMBED_CHUNK
        if self.device == "cpu":
            torch.set_num_threads(1)  # the bytes must not depend on the worker's cores
        self.max_tokens = config.max_text_tokens
        self.kind = config.kind
        # the trainer's ClapModel or transformers' (each imported on use): self.kind says which
        self.model: Any
        if config.kind == "trainer":
            from clap_corpus.trainer.train import load_for_eval

            self.model, self.tokenizer, cfg = load_for_eval(config.model_path, self.device)
            self.fused = True  # the trainer's encoders take all four views (fusion or not, they decide)
            self.max_tokens = min(self.max_tokens, cfg.text.max_length)
        else:
            from transformers import AutoTokenizer, ClapModel
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            local_only = not config.download
            self.model = ClapModel.from_pretrained(config.model_path, local_files_only=local_only)
            self.model = self.model.to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(config.model_path, local_files_only=local_only)
            self.fused = bool(getattr(self.model.config.audio_config, "enable_fusion", False))
        log.info("CLAP model %s (%s) loaded on %s", config.model, config.kind, self.device)

    def embed(self, items: list[ClapInput]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(audio embedding [dim], caption embeddings [captions, dim]) per item, in order."""
        audio = self._audio(items)
        texts = [t for it in items for t in it.texts]
        text = self._text(texts)
        out, at = [], 0
        for i, it in enumerate(items):
            out.append((audio[i], text[at : at + len(it.texts)]))
            at += len(it.texts)
        return out

    def _chunks(self, n: int) -> Iterable[list[int]]:
        for start in range(0, n, self.chunk):
            idx = list(range(start, min(n, start + self.chunk)))
            yield idx + [idx[-1]] * (self.chunk - len(idx))  # padded with copies: one fixed shape

    def _audio(self, items: list[ClapInput]) -> np.ndarray:
        torch = self._torch
        out = []
        for idx in self._chunks(len(items)):
            views = np.stack([items[i].views if self.fused else unfused_view(items[i].views) for i in idx])
            x = torch.from_numpy(views.astype(np.float32)).to(self.device)
            longer = torch.tensor([items[i].longer for i in idx], dtype=torch.bool, device=self.device)
            with torch.inference_mode():
                if self.kind == "trainer":
                    y = self.model.encode_audio(x, longer)
                else:
                    y = _pooled(self.model.get_audio_features(input_features=x, is_longer=longer[:, None]))
            real = len(dict.fromkeys(idx))
            out.append(y.float().cpu().numpy()[:real])
        return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)

    def _text(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        ids = [self.tokenizer(t, truncation=True, max_length=self.max_tokens)["input_ids"] for t in texts]
        result: list[np.ndarray | None] = [None] * len(texts)
        for group in length_groups(len(seq) for seq in ids):
            for chunk in self._chunks(len(group)):
                rows = [group[j] for j in chunk]
                x = torch.tensor([ids[r] for r in rows], dtype=torch.long, device=self.device)
                mask = torch.ones_like(x)
                with torch.inference_mode():
                    if self.kind == "trainer":
                        y = self.model.encode_text(x, mask)
                    else:
                        y = _pooled(self.model.get_text_features(input_ids=x, attention_mask=mask))
                y = y.float().cpu().numpy()
                for j, r in enumerate(rows):
                    result[r] = y[j]
        return np.stack(result)  # type: ignore[arg-type]


def load_embedder(config: ClapConfig, spec_path: str = "") -> Embedder:
    """Load the model, or raise :class:`ClapModelUnavailable` saying how to provide it."""
    try:
        return Embedder(config)
    except Exception as e:
        where = f"{spec_path}: " if spec_path else ""
        raise ClapModelUnavailable(
            f"{where}options.clap.model: cannot load the CLAP model '{config.model}' ({config.kind}): "
            f"{load_error(e)}\n"
            "Provide it in one of these ways:\n"
            f"  - on a machine with network, `hf download {config.model}` and copy the Hugging Face cache "
            "here (and into the worker image), or set options.clap.download: true;\n"
            "  - or point options.clap.model at a save_pretrained folder of a transformers ClapModel "
            "(config.json, weights, tokenizer files);\n"
            "  - or at the --output folder of `clapcorpus train` (its newest checkpoint is used);\n"
            "  - or remove options.clap (or set enabled: false) to build without scores."
        ) from None


class ClapModelHandler(ModelHandler[ClapInput, PredictionResult, Embedder]):
    """ClapInput in, (audio embedding, caption embeddings) out; wrap it in KeyedModelHandler."""

    def __init__(self, config: ClapConfig):
        super().__init__(
            min_batch_size=config.min_batch_size,
            max_batch_size=config.max_batch_size,
            large_model=config.large_model,
        )
        self.config = config

    def load_model(self) -> Embedder:
        return load_embedder(self.config)

    def run_inference(
        self, batch: Sequence[ClapInput], model: Embedder, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        out = model.embed(list(batch))
        return [PredictionResult(x, y, model_id=self.config.model) for x, y in zip(batch, out, strict=True)]

    def get_metrics_namespace(self) -> str:
        return "clap"
