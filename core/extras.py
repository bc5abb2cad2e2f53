"""Optional parts of the install (setup.py's extras) and the one error a missing one raises.

Building a corpus needs neither PyTorch nor transformers; K2C, the trainer and the benchmarks do. A
feature that needs an extra checks for it where the user asks for it (the launcher, the command), by
looking the modules up without importing them, so the message names the pip command instead of a
traceback from a worker.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from clap_corpus.core.errors import ConfigError

PACKAGE = "clap-corpus"
# extra -> the top-level modules it provides that the code imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "k2c": ("torch", "transformers", "sentencepiece", "safetensors"),
    "trainer": ("torch", "transformers", "sentencepiece", "safetensors"),
    "score": ("torch", "transformers", "safetensors"),  # faiss is optional: numpy searches without it
}


class MissingExtraError(ConfigError):
    """A feature was asked for whose optional packages are not installed."""


def missing_modules(modules: Sequence[str]) -> list[str]:
    """The modules of ``modules`` that cannot be imported here (looked up, not imported)."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package that fails, or a broken module entry
            found = False
        if not found:
            missing.append(name)
    return missing


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` naming the pip command if ``extra``'s modules are missing."""
    missing = missing_modules(EXTRAS[extra])
    if missing:
        raise MissingExtraError(
            f"{feature} needs the '{extra}' extra, which is not installed (missing: {', '.join(missing)}): "
            f"pip install '{PACKAGE}[{extra}]'"
        )
