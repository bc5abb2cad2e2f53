"""Checkpoints: weights in safetensors, optimizer and run state through ``torch.load(weights_only=True)``.

Nothing here unpickles arbitrary objects. A checkpoint folder::

    step_00000120/
        model.safetensors      the CLAP weights (persistent buffers included: BatchNorm statistics)
        state.pt               optimizer state, step, epoch position, RNG state, skip counts
        config.json            {"model": ModelConfig, "train": TrainConfig}
        text/                  tokenizer + text model config (no weights), so loading needs no network

Folders are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from clap_corpus.trainer.config import ModelConfig, TrainConfig, config_diff

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
CONFIG_FILE = "config.json"
TEXT_DIR = "text"
_STEP_RE = re.compile(r"^step_(\d{8})$")


class CheckpointError(Exception):
    """A checkpoint that is missing, incomplete, or made for another model configuration."""


@dataclass(frozen=True)
class Checkpoint:
    path: str
    model: ModelConfig
    train: TrainConfig | None

    @property
    def text_dir(self) -> str:
        return os.path.join(self.path, TEXT_DIR)


def checkpoint_dir(output: str, step: int) -> str:
    return os.path.join(output, "checkpoints", f"step_{step:08d}")


def latest_checkpoint(output: str) -> str | None:
    """The newest complete checkpoint under ``<output>/checkpoints`` (or ``output`` itself if it is one)."""
    if os.path.isfile(os.path.join(output, MODEL_FILE)):
        return output
    folder = os.path.join(output, "checkpoints")
    if not os.path.isdir(folder):
        return None
    steps = sorted(name for name in os.listdir(folder) if _STEP_RE.match(name))
    return os.path.join(folder, steps[-1]) if steps else None


def save_checkpoint(
    path: str,
    model: nn.Module,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig | None,
    state: dict[str, Any],
    text_dir: str,
) -> str:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".inprogress-", dir=parent)
    try:
        save_model(model, os.path.join(tmp, MODEL_FILE))
        torch.save(state, os.path.join(tmp, STATE_FILE))
        doc = {"model": model_cfg.to_json(), "train": train_cfg.to_json() if train_cfg else None}
        with open(os.path.join(tmp, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        shutil.copytree(text_dir, os.path.join(tmp, TEXT_DIR))
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_checkpoint(path: str) -> Checkpoint:
    cfg_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isfile(cfg_path) or not os.path.isfile(os.path.join(path, MODEL_FILE)):
        raise CheckpointError(f"{path} is not a checkpoint (it needs {CONFIG_FILE} and {MODEL_FILE})")
    with open(cfg_path, encoding="utf-8") as f:
        doc = json.load(f)
    try:
        model = ModelConfig.from_json(doc["model"])
        train = TrainConfig.from_json(doc["train"]) if doc.get("train") else None
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: unreadable configuration ({e})") from None
    return Checkpoint(path, model, train)


def check_compatible(ckpt: Checkpoint, expected: ModelConfig) -> None:
    """Raise :class:`CheckpointError` naming every field where the checkpoint's model differs."""
    diff = config_diff(ckpt.model.to_json(), expected.to_json())
    if diff:
        raise CheckpointError(
            f"checkpoint {ckpt.path} was made for another model configuration "
            f"(checkpoint != requested): {'; '.join(diff)}"
        )


def load_weights(path: str, model: nn.Module) -> None:
    """Load ``model.safetensors`` into ``model``, with a clear message when names or shapes differ."""
    file = os.path.join(path, MODEL_FILE)
    with safe_open(file, framework="pt") as f:
        stored = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (not a dict)
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(wanted) - set(stored))
    unexpected = sorted(set(stored) - set(wanted))
    shapes = sorted(k for k in set(wanted) & set(stored) if wanted[k] != stored[k])
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} of another shape (e.g. {k}: {stored[k]} vs {wanted[k]})")
        raise CheckpointError(f"{file} does not fit this model: {', '.join(parts)}")
    load_model(model, file, strict=True)


def load_state(path: str) -> dict[str, Any]:
    file = os.path.join(path, STATE_FILE)
    if not os.path.isfile(file):
        raise CheckpointError(f"{path} has no {STATE_FILE}: it holds weights only and cannot be resumed")
    # weights_only: tensors, numbers, strings and containers; never arbitrary pickled objects.
    return torch.load(file, map_location="cpu", weights_only=True)


def prune_checkpoints(output: str, keep: int) -> None:
    folder = os.path.join(output, "checkpoints")
    if keep < 1 or not os.path.isdir(folder):
        return
    steps = sorted(name for name in os.listdir(folder) if _STEP_RE.match(name))
    for name in steps[:-keep]:
        shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
