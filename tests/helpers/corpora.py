"""The demo corpus, written and built in one call: what end-to-end tests start from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus

# In-process Beam runner: a test build needs no worker processes (tests of those start their own).
RUNNER = ("--runner=FnApiRunner",)


@dataclass(frozen=True)
class DemoBuild:
    spec: str  # <root>/src/spec.yaml
    out: str  # <root>/out, the built corpus
    summary: dict[str, Any]  # what run_corpus returned (also <out>/summary.json)


def build_demo(root: Path, **options: Any) -> DemoBuild:
    """``write_demo_corpus(<root>/src, **options)`` built into ``<root>/out``."""
    spec = write_demo_corpus(str(root / "src"), **options)
    out = str(root / "out")
    return DemoBuild(spec, out, run_corpus(spec, out, list(RUNNER)))
