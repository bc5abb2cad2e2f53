"""The source folders: listed once (setup.py's FOLDERS), and one name per module (issue 27).

- Running from the repository root puts it on sys.path (`python -m`, `python -c`), so `import
  pipeline.spec` used to work next to `clap_corpus.pipeline.spec.corpus`: a second copy of every module (two
  `Code` enums, two `Record` classes that do not compare equal). Each folder refuses that name.
- The folder list was written six times (setup.py, both Dockerfiles, three tests). The tests read
  setup.py's (tests/source_tree.py); the Dockerfiles copy the build context whole, less .dockerignore.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

from source_tree import FOLDERS, SOURCES

REPO = Path(__file__).resolve().parents[1]

TOP_LEVEL = """
import json, sys
out = {}
for folder in sys.argv[1:]:
    try:
        __import__(folder)
    except ImportError as e:
        out[folder] = str(e)
    else:
        out[folder] = None
import clap_corpus.pipeline.spec.corpus
out["sys.modules"] = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[1:])
out["spec"] = clap_corpus.pipeline.spec.corpus.__name__
print(json.dumps(out))
"""


def test_a_source_folder_is_imported_only_under_clap_corpus():
    # `python -c` from the root: the working directory first on sys.path, as under `python -m`
    proc = subprocess.run(
        [sys.executable, "-c", TOP_LEVEL, *FOLDERS], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    for folder in FOLDERS:
        assert out[folder], f"`import {folder}` worked from the repository root: a second identity"
        assert f"Import clap_corpus.{folder} instead" in out[folder], out[folder]
    assert out["sys.modules"] == [] and out["spec"] == "clap_corpus.pipeline.spec.corpus"


def test_python_m_on_a_source_folder_names_the_module_to_run():
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "Import clap_corpus.pipeline instead" in proc.stderr, proc.stderr[-2000:]


def test_every_package_at_the_top_is_installed():
    """A folder with an __init__.py next to the others is a source folder: setup.py installs it."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages == {"clap_corpus", *FOLDERS}, "add the folder to setup.py's FOLDERS"


def _ignored(rel: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: a pattern that matches the path, or a folder above it, leaves it out."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch(prefix, pattern.strip("/")) for prefix in prefixes):
            return True
    return False


def test_the_docker_images_copy_what_setup_py_installs():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns)  # exceptions would need Docker's own matcher
    for name in ("Dockerfile", "Dockerfile.gpu"):
        copies = re.findall(r"^COPY\s+(?!--)(.+)\s+(\S+)$", (REPO / name).read_text(), flags=re.M)
        assert copies == [(".", "./")], f"{name}: copy the build context whole ({copies})"
    # everything setup.py reads reaches the image; the editable install's links and the venv do not
    for source in SOURCES:
        for path in [REPO / source, *(REPO / source).rglob("*")]:
            rel = path.relative_to(REPO).as_posix()
            assert "__pycache__" in rel or not _ignored(rel, patterns), f".dockerignore leaves out {rel}"
    for rel in (".venv", "build/__editable__.x/clap_corpus/core/records.py", ".git", "tests/test_x.py"):
        assert _ignored(rel, patterns), rel
