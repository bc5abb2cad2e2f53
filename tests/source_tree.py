"""The repository's source folders, as setup.py's FOLDERS lists them (the one place they are written),
and a real install of a copy of them into a fresh virtualenv.

setup.py installs the folders as ``clap_corpus.<folder>``; the tests that copy, scan or stage the
sources read the list from here, and the Dockerfiles copy the build context whole (.dockerignore leaves
out what pip does not need), so a new folder is one edit of FOLDERS.
"""

from __future__ import annotations

import ast
import shutil
import site
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup_folders() -> tuple[str, ...]:
    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "FOLDERS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise LookupError("setup.py has no `FOLDERS = (...)` literal")


FOLDERS: tuple[str, ...] = _setup_folders()
# what a build of the package reads: setup.py, the namespace package and the source folders
SOURCES: tuple[str, ...] = ("setup.py", "clap_corpus", *FOLDERS)


def copy_sources(dest: Path, names: tuple[str, ...] = SOURCES) -> Path:
    """A copy of the checkout's ``names`` (pip builds in the source folder, which must not be ours)."""
    dest.mkdir(parents=True)
    for name in names:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    return dest


def _site_folders() -> list[str]:
    folders = [*site.getsitepackages(), *sys.path]
    return list(dict.fromkeys(p for p in folders if p.endswith(("site-packages", "dist-packages"))))


def install(source: Path, venv: Path, *, editable: bool) -> Path:
    """``pip install [-e] source`` into a fresh venv, offline; returns the venv's site-packages folder.

    No build isolation, no dependencies, no index: the dependencies are seen through a .pth file naming
    this interpreter's site folders (their own .pth files, an editable install's among them, are not
    run from there). The install command is otherwise the README's, so setup.py decides its mode.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "zz_dependencies.pth").write_text("\n".join(_site_folders()) + "\n")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "-q"),
            *("--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"),
            *(("-e",) if editable else ()),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(purelib)
