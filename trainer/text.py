"""Text side: any Hugging Face encoder, or a tiny one built from the corpus captions.

A run keeps its text model's tokenizer and config (not the weights: they are in the checkpoint) in a
folder, so evaluation and resume never need the network. ``"roberta-base"`` (LAION-CLAP's choice)
is loaded by name from the user's Hugging Face cache or hub; ``"tiny"`` trains a WordPiece tokenizer
on the training captions and defines a small BERT from scratch, for machines without the weights
(tests, the CPU demo).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from clap_corpus.trainer.config import TextConfig

if TYPE_CHECKING:  # transformers is imported on use
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

TINY = "tiny"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TextModelError(Exception):
    """The text model or its tokenizer cannot be loaded; the message says how to provide it."""


class TextEncoder(nn.Module):
    """A Hugging Face encoder and a pooling: ``(input_ids, attention_mask) -> [B, hidden]``."""

    def __init__(self, model: PreTrainedModel, pooling: str):
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.dim = int(model.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def build_tiny_text_model(captions: Iterable[str], folder: str, cfg: TextConfig) -> str:
    """Build a WordPiece tokenizer from ``captions`` and write it with a small BERT config to ``folder``.

    The vocabulary is the most frequent whole words (ties by spelling) plus every character seen,
    alone and as a ``##`` continuation, so no word is ever unknown. It is built here rather than by
    the ``tokenizers`` trainer, whose choice among equally frequent merges changes from run to run:
    the same captions must give the same tokenizer, hence the same run.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, PreTrainedTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in captions:
        words.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = [*SPECIAL_TOKENS, *chars, *(f"##{c}" for c in chars)]
    room = max(0, cfg.tiny_vocab - len(vocab))
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:room]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=cfg.max_length,
    )
    os.makedirs(folder, exist_ok=True)
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=cfg.tiny_hidden,
        num_hidden_layers=cfg.tiny_layers,
        num_attention_heads=cfg.tiny_heads,
        intermediate_size=4 * cfg.tiny_hidden,
        max_position_embeddings=max(128, cfg.max_length + 2),
        pad_token_id=tok.token_to_id("[PAD]"),
    )
    config.save_pretrained(folder)
    return folder


def resolve_pooling(cfg: TextConfig) -> str:
    if cfg.pooling != "auto":
        return cfg.pooling
    # A from-scratch encoder learns faster from the mean of its tokens than from an untrained pooler.
    return "mean" if cfg.model == TINY else "pooler"


def require_local_model(source: str) -> None:
    """Stop at once unless ``source`` is a local folder or a hub model already in the Hugging Face cache.

    From a machine that cannot reach the hub, ``from_pretrained`` spends most of a minute in retries
    (and prints each warning twice) before it fails; this check costs a file lookup."""
    if os.path.isdir(source):
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return
    raise TextModelError(
        f"the text model {source!r} is not in the Hugging Face cache: download it once with "
        f"`hf download {source}` (the command line that comes with huggingface_hub), point --text-model "
        "at a local folder, or use --text-model tiny to build a small encoder from the corpus captions."
    )


def load_tokenizer(source: str, offline: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, local_files_only=offline)
    except Exception as e:
        raise TextModelError(_how_to(source, e)) from None


def load_text_encoder(
    source: str, cfg: TextConfig, *, pretrained: bool, offline: bool = False
) -> TextEncoder:
    """The encoder from ``source`` (hub id or folder): with its weights, or freshly initialised."""
    from transformers import AutoConfig, AutoModel

    pooling = resolve_pooling(cfg)
    kw: dict[str, Any] = {} if pooling == "pooler" else {"add_pooling_layer": False}  # the model's own
    try:
        if pretrained:
            try:
                model = AutoModel.from_pretrained(source, local_files_only=offline, **kw)
            except TypeError:  # an architecture without a pooler option
                model = AutoModel.from_pretrained(source, local_files_only=offline)
        else:
            config = AutoConfig.from_pretrained(source, local_files_only=offline)
            try:
                model = AutoModel.from_config(config, **kw)
            except TypeError:
                model = AutoModel.from_config(config)
    except Exception as e:
        raise TextModelError(_how_to(source, e)) from None
    if pooling == "pooler" and getattr(model, "pooler", None) is None:
        pooling = "cls"
    return TextEncoder(model, pooling)


def save_text_files(tokenizer: Any, encoder: TextEncoder, folder: str) -> None:
    """Tokenizer and model config (no weights) into ``folder``, so loading needs no network."""
    os.makedirs(folder, exist_ok=True)
    tokenizer.save_pretrained(folder)
    encoder.model.config.save_pretrained(folder)


def tokenize(tokenizer: Any, captions: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(captions, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _how_to(source: str, err: Exception) -> str:
    return (
        f"cannot load the text model {source!r} ({type(err).__name__}: {str(err).splitlines()[0][:200]}). "
        f"Download it once into the Hugging Face cache (`hf download {source}`, the command line that "
        "comes with huggingface_hub), "
        "point --text-model at a local folder, or use --text-model tiny to build a small encoder "
        "from the corpus captions."
    )
