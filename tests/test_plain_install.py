"""A plain install (``pip install .``, not ``-e``) works when run from the repository root (issue 25).

``python -m`` puts the working directory first on sys.path, so the repository's own ``clap_corpus/``
folder (no source folder in it) is found before the installed package: before the fix every Beam worker
failed with ``ModuleNotFoundError: No module named 'clap_corpus.pipeline'``, and so did
``python -m clap_corpus.pipeline`` itself. The install is real and offline: a fresh venv, the project
pip-installed from a copy of the source (no build isolation, no dependencies, no index), the
dependencies seen through a .pth file naming this interpreter's site folders (their own .pth files,
an editable install's finder among them, are not run from there).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from source_tree import copy_sources, install

REPO = Path(__file__).resolve().parents[1]


def _plain_install(tmp: Path) -> Path:
    purelib = install(copy_sources(tmp / "source"), tmp / "venv", editable=False)
    assert (purelib / "clap_corpus" / "pipeline" / "launch" / "run.py").exists()
    return tmp / "venv"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    return env | {"HF_HUB_OFFLINE": "1"}


def test_a_plain_install_runs_from_the_repository_root(tmp_path):
    venv = _plain_install(tmp_path)
    # the launcher under `python -m`, with the repository's clap_corpus/ first on sys.path
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "clap_corpus.pipeline", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # a whole run in the default multi-process mode: every worker is a `python -m` started there
    out = tmp_path / "demo"
    proc = subprocess.run(
        [str(venv / "bin" / "clapcorpus"), "demo", "--output", str(out), "--clips", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,  # a hang, not a speed limit
        env=_env(),
    )
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    tars = list((out / "corpus").rglob("*.tar"))
    assert tars
    with tarfile.open(tars[0]) as tar:
        assert any(name.endswith(".flac") for name in tar.getnames())
