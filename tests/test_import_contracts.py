"""The layers point one way, and training never needs Apache Beam: the import-linter contracts of
.importlinter, checked on the installed package, and Beam's absence checked by importing for real.

    pipeline                  cli > launch | demo > stages > outputs > spec
    manifests | k2c | scoring sources; keyword-to-caption; CLAP scoring (their Beam stages included)
    trainer                   training: core and transforms (scoring loads its checkpoints)
    transforms                per-sample steps, storage, sharding
    core                      contracts: records, rejects, schema, layout, hashing, audio references

import-linter's graph (grimp) holds every import: at module level, inside functions, relative, and the
chains through other modules. The contracts run in a child process whose working directory is empty:
from the repository root, the root's clap_corpus/ folder (no source folder in it) would hide the install.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".importlinter"
NAMESPACE = "clap_corpus"

# One import added to the real graph -> the contracts (ids in .importlinter) it must break.
PLANTED: dict[tuple[str, str], set[str]] = {
    ("core.hashing", "manifests.notes"): {"layers", "acyclic"},  # up: then the folders import each other
    ("manifests.base", "k2c.keywords"): {"layers"},  # the slices are independent of one another
    ("k2c.apply", "trainer.model"): {"trainer-above"},
    ("pipeline.spec.corpus", "pipeline.launch.run"): {"pipeline-layers", "acyclic"},
    ("pipeline.stages.graph", "pipeline.cli.main"): {"pipeline-layers", "acyclic"},
    ("manifests.tables", "apache_beam"): {"beam-layer"},
    ("trainer.data", "transforms.storage"): {"trainer-no-beam"},  # Beam through another module
    ("manifests.tables", "manifests.registry"): {"acyclic"},  # the registry reaches tables
}


def _module(name: str) -> str:
    return name if name == "apache_beam" else f"{NAMESPACE}.{name}"


def _broken_by_plants() -> dict[str, list[str]]:
    """Run in the child process: for the real graph ("") and each planted import, the broken contracts."""
    import grimp
    from importlinter.api import read_configuration
    from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
    from importlinter.contracts.forbidden import ForbiddenContract
    from importlinter.contracts.layers import LayersContract

    kinds = {
        "layers": LayersContract,
        "forbidden": ForbiddenContract,
        "acyclic_siblings": AcyclicSiblingsContract,
    }
    config = read_configuration(str(CONFIG))
    session = config["session_options"]
    contracts = [
        (options["id"], kinds[options["type"]](options["name"], session, options))
        for options in config["contracts_options"]
    ]
    real = grimp.build_graph(NAMESPACE, include_external_packages=True, cache_dir=None)
    out = {}
    for key, (importer, imported) in [("", ("", "")), *((" -> ".join(p), p) for p in PLANTED)]:
        graph = copy.deepcopy(real)
        if importer:
            graph.add_import(importer=_module(importer), imported=_module(imported))
        # each check on its own copy, as lint-imports does: a contract's ignore_imports edits the graph
        out[key] = sorted(
            cid for cid, contract in contracts if not contract.check(copy.deepcopy(graph), verbose=False).kept
        )
    return out


def test_the_contracts_hold(tmp_path):
    """`lint-imports` on the installed package, as a developer runs it (its report on failure)."""
    run = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    proc = subprocess.run(
        [sys.executable, "-c", run, "--no-cache", "--no-logo", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and f"{len(_contract_ids())} kept" in proc.stdout, proc.stdout[-3000:]


def _contract_ids() -> list[str]:
    head = "[importlinter:contract:"
    return [line[len(head) : -1] for line in CONFIG.read_text().splitlines() if line.startswith(head)]


def test_each_contract_catches_what_it_is_for(tmp_path):
    """An upward import, one between the slices, a cycle, Beam outside its layer: each planted import
    breaks the contracts it should and no other (and each contract is broken by some plant)."""
    proc = subprocess.run(
        [sys.executable, __file__], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    broken = json.loads(proc.stdout)
    assert broken.pop("") == []
    assert broken == {" -> ".join(p): sorted(ids) for p, ids in PLANTED.items()}
    assert set().union(*PLANTED.values()) == set(_contract_ids())


def test_nothing_outside_the_beam_layer_loads_beam(tmp_path):
    """Imported for real in a fresh interpreter: every module of core/, transforms/, manifests/,
    trainer/, and k2c/ and scoring/ less their Beam stages (stage.py, handler.py). The contracts see
    transforms/storage.py import Beam; this sees that it does so lazily (on the first file access).
    The trainer's own check, with the import chain it prints, is in test_trainer_storage.py."""
    folders = ("core", "transforms", "manifests", "trainer", "k2c", "scoring")
    beam_stages = ("stage", "handler")
    code = f"""
import importlib, pkgutil, sys
for folder in {folders!r}:
    package = importlib.import_module("{NAMESPACE}." + folder)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.rpartition(".")[2] not in {beam_stages!r}:
            importlib.import_module(info.name)
            assert "apache_beam" not in sys.modules, info.name + " loads apache_beam"
            print(info.name)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # every module of the source tree was imported (the installed ones: a module added since the
    # editable install was made is not there, and says so, clap_corpus/_install.py)
    expected = {
        ".".join((NAMESPACE, *p.relative_to(REPO).with_suffix("").parts))
        for folder in folders
        for p in (REPO / folder).rglob("*.py")
        if p.stem not in (*beam_stages, "__init__")
    }
    assert expected <= set(proc.stdout.split()), sorted(expected - set(proc.stdout.split()))


if __name__ == "__main__":
    print(json.dumps(_broken_by_plants()))
