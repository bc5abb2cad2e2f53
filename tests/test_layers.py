"""The layers point one way, and training never needs Apache Beam.

    pipeline            Beam wiring, command line
    manifests   k2c   scoring   sources; keyword-to-caption; CLAP scoring (their Beam stages included)
    transforms          per-sample steps, storage, sharding
    core                contracts: records, rejects, schema, layout, hashing, audio references
    trainer             training: transforms, core (never Apache Beam)

Read from the source (every import statement, also inside functions), so an upward import fails here
before it becomes a cycle.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "clap_corpus"
# folder -> the folders it may import from
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "transforms": {"core"},
    "manifests": {"core", "transforms"},
    "k2c": {"core", "transforms"},
    "scoring": {"core", "transforms", "trainer"},  # the model of a checkpoint of our own trainer
    "trainer": {"core", "transforms"},
    "pipeline": {"core", "transforms", "manifests", "k2c", "scoring", "trainer"},
}
# Modules that may import Apache Beam: the Beam layer, K2C's RunInference stage, and the storage
# module that reads through Beam's FileSystems (gs://, s3://) for the pipeline.
BEAM_ALLOWED = (
    "pipeline",
    "k2c.stage",
    "k2c.handler",
    "scoring.stage",
    "scoring.handler",
    "transforms.storage",
)


def _folder_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == NAMESPACE:
        parts = parts[1:]
    return parts[0] if parts and parts[0] in ALLOWED else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _modules():
    for folder in ALLOWED:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            yield folder, ".".join(rel.parts), path


def test_every_import_points_down():
    wrong = []
    for folder, _, path in _modules():
        for line, name in _imports(path):
            target = _folder_of(name)
            if target is not None and target != folder and target not in ALLOWED[folder]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {folder} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_beam_is_imported_by_the_beam_layer_only():
    wrong = []
    for _, module, path in _modules():
        if module.startswith(BEAM_ALLOWED):
            continue
        for line, name in _imports(path):
            if name.split(".")[0] == "apache_beam":
                wrong.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a core module importing the pipeline is caught."""
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "bad.py").write_text(f"from {NAMESPACE}.pipeline.graph import BuildCorpus\n")
    for folder in ALLOWED:
        (tmp_path / folder).mkdir(exist_ok=True)
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    with pytest.raises(AssertionError, match=r"core imports clap_corpus\.pipeline\.graph"):
        test_every_import_points_down()


def test_the_core_loads_without_beam():
    """Imported for real in a fresh interpreter: a transitive import of Beam fails this (the trainer's
    own check, with the import chain it prints, is in test_trainer_storage.py)."""
    names = [
        f"{NAMESPACE}.core.{p.stem}" for p in sorted((REPO / "core").glob("*.py")) if p.stem != "__init__"
    ]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({n!r})\n" for n in names)
    code += "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'apache_beam')\n"
    code += "assert not loaded, loaded[:5]\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=os.getcwd()
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
