"""A tiny Hugging Face ClapModel saved in a folder, for the CLAP scoring tests (no download)."""

from __future__ import annotations

import os

import torch

from clap_corpus.trainer.config import TextConfig
from clap_corpus.trainer.text import build_tiny_text_model

CAPTIONS = [
    "a dog barks",
    "rain on a roof",
    "a bell rings",
    "The sound of noise.",
    "A sound tagged tone, sine and beep.",
]


def tiny_clap_model(folder: str, *, fusion: bool = True, seed: int = 0) -> str:
    """A ClapModel of ~40 000 parameters (HTS-AT with two one-block stages, a one-layer text encoder)
    with a WordPiece tokenizer, written by ``save_pretrained``: what ``options.clap.model`` loads."""
    from transformers import AutoTokenizer, ClapConfig, ClapModel

    build_tiny_text_model(CAPTIONS, folder, TextConfig(model="tiny", tiny_hidden=32, tiny_layers=1))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    os.remove(os.path.join(folder, "config.json"))  # the BERT config; the ClapModel's replaces it
    audio = dict(
        depths=[1, 1],
        num_attention_heads=[2, 2],
        patch_embeds_hidden_size=16,
        hidden_size=32,
        enable_fusion=fusion,
        window_size=8,
        spec_size=256,
        num_mel_bins=64,
        projection_dim=16,
    )
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16))
    model.save_pretrained(folder)
    return folder


def trainer_checkpoint(folder: str, encoder: str = "cnn", size: str = "micro", seed: int = 0) -> str:
    """A checkpoint of the bundled trainer's CLAP (fusion on, as the trainer builds it by default) with
    untrained weights and a tiny text model: what ``options.clap.model`` loads as ``kind: trainer``."""
    from clap_corpus.trainer.checkpoint import save_checkpoint
    from clap_corpus.trainer.config import AudioConfig, ModelConfig
    from clap_corpus.trainer.train import build_model

    text_cfg = TextConfig(model="tiny", tiny_hidden=32, tiny_layers=1)
    cfg = ModelConfig(audio=AudioConfig(encoder=encoder, size=size), text=text_cfg, joint_dim=32)
    text_dir = build_tiny_text_model(CAPTIONS, os.path.join(folder, "text"), text_cfg)
    model, _ = build_model(cfg, text_dir, pretrained=False, seed=seed, offline=True)
    return save_checkpoint(os.path.join(folder, "ckpt"), model, cfg, None, {}, text_dir)
