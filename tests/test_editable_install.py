"""The README's editable install is one that editors and type checkers follow (issue 27).

setuptools' default editable install maps ``clap_corpus.<folder>`` onto the source folders with an
import hook, which pyright (VS Code's Python engine) cannot run: it resolved none of the project's
imports, so no go-to-definition, no rename, no type checking. setup.py makes ``pip install -e .`` the
strict mode instead: a tree of links to the source files under ``build/``, named by a plain path in a
.pth file. Checked here on a real install of a copy of the sources into a fresh venv, with the real
type checker and language server an editor runs (basedpyright), as a file inside the checkout and as
another project's file see it.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from docs_text import docs_page, fenced_blocks, readme
from source_tree import SOURCES, copy_sources, install

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROBE = """\
from clap_corpus.core.hashing import stable_hash64
from clap_corpus.core.records import Reject

reveal_type(stable_hash64)
stable_hash64(1)
Reject(source="s", stage="decode", code="decode_error", reason="r")
"""


def _tool(name: str) -> str:
    return shutil.which(name, path=str(BIN)) or shutil.which(name) or pytest.fail(f"{name} is not installed")


@pytest.fixture(scope="module")
def editable(tmp_path_factory):
    """A copy of the checkout (bench/ too: `clapcorpus bench` runs it from there), installed with
    `pip install -e` and nothing else, as the README says."""
    tmp = tmp_path_factory.mktemp("editable")
    source = copy_sources(tmp / "source", (*SOURCES, "pyrightconfig.json", "bench"))
    purelib = install(source, tmp / "venv", editable=True)
    return {"source": source, "venv": tmp / "venv", "purelib": purelib, "tmp": tmp}


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    # the language server asks `python` on PATH for the search paths, as an editor's selected one
    return env | {"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}


def _check(editable, cwd: Path, probe: Path) -> list[dict]:
    proc = subprocess.run(
        [
            _tool("basedpyright"),
            "--outputjson",
            "--pythonpath",
            str(editable["venv"] / "bin" / "python"),
            probe,
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.stdout.lstrip().startswith("{"), proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout)["generalDiagnostics"]


def test_the_install_is_a_path_on_sys_path(editable):
    (pth,) = editable["purelib"].glob("__editable__*clap_corpus*.pth")
    (line,) = pth.read_text().split()
    assert not line.startswith("import"), "the install is an import hook that type checkers cannot follow"
    link_tree = Path(line)
    assert link_tree.is_relative_to(editable["source"] / "build")
    linked = link_tree / "clap_corpus" / "core" / "hashing.py"
    assert linked.resolve() == (editable["source"] / "core" / "hashing.py").resolve()


@pytest.mark.parametrize("where", ["in the checkout", "in another project"])
def test_the_type_checker_reads_clap_corpus_from_the_install(editable, where):
    folder = editable["source"] / "tests" if where == "in the checkout" else editable["tmp"] / "elsewhere"
    folder.mkdir(exist_ok=True)
    if where == "in another project":  # its own settings: the checkout's mode, none of its paths
        (folder / "pyrightconfig.json").write_text('{"typeCheckingMode": "basic"}')
    probe = folder / "probe.py"
    probe.write_text(PROBE)
    diags = _check(editable, folder if where == "in another project" else editable["source"], probe)
    by_line = {}
    for d in diags:
        by_line.setdefault(d["range"]["start"]["line"] + 1, []).append((d.get("rule"), d["message"]))
    assert not by_line.get(1) and not by_line.get(2), by_line  # both imports resolve
    # the function's signature, read from core/hashing.py
    assert by_line[4] == [(None, 'Type of "stable_hash64" is "(text: str, *, salt: str = "") -> int"')]
    # so its callers are checked against it, and Reject's fields are the declared enums
    assert [rule for rule, _ in by_line[5]] == ["reportArgumentType"], by_line
    assert [rule for rule, _ in by_line[6]] == ["reportArgumentType", "reportArgumentType"], by_line


class _LanguageServer:
    """A client of the language server an editor runs, over stdio (LSP's Content-Length frames)."""

    def __init__(self, cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [_tool("basedpyright-langserver"), "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
        )
        self.messages: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        while True:
            length = None
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line[15:])
            if length is None:
                return
            self.messages.put(json.loads(stream.read(length)))

    def send(self, message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.proc.stdin.flush()

    def request(self, id_: int, method: str, params: dict | None, timeout: float = 300) -> object:
        self.send({"id": id_, "method": method, "params": params})
        deadline = time.monotonic() + timeout  # a hang fails here, it is not a speed limit
        while True:
            message = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            if "method" in message and "id" in message:  # the server's own requests: no capabilities
                self.send({"id": message["id"], "result": None})
            elif message.get("id") == id_:
                return message.get("result")

    def close(self) -> None:
        try:
            self.request(999, "shutdown", None, timeout=60)
            self.send({"method": "exit", "params": None})
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def _definitions(editable, probe: Path, positions: list[tuple[int, int]]) -> list[object]:
    """textDocument/definition at each (line, column): what an editor asks when a name is ctrl-clicked."""
    server = _LanguageServer(editable["source"], _env(editable["venv"]))
    try:
        root = editable["source"].as_uri()
        server.request(0, "initialize", {"processId": None, "rootUri": root, "capabilities": {}})
        server.send({"method": "initialized", "params": {}})
        doc = {"uri": probe.as_uri()}
        opened = {**doc, "languageId": "python", "version": 1, "text": probe.read_text()}
        server.send({"method": "textDocument/didOpen", "params": {"textDocument": opened}})
        return [
            server.request(i, "textDocument/definition", {"textDocument": doc, "position": at})
            for i, at in enumerate(({"line": line - 1, "character": col} for line, col in positions), 1)
        ]
    finally:
        server.close()


def test_go_to_definition_opens_the_source_file(editable):
    """What an editor asks when a name is ctrl-clicked, on a file of the checkout."""
    source = editable["source"]
    probe = source / "tests" / "goto.py"
    probe.parent.mkdir(exist_ok=True)
    probe.write_text(PROBE)
    # `stable_hash64` in line 1, `Reject` in line 2
    found = _definitions(editable, probe, [(1, 40), (2, 38)])
    for locations, (module, name) in zip(
        found, [("core/hashing.py", "def stable_hash64"), ("core/records.py", "class Reject")], strict=True
    ):
        assert isinstance(locations, list) and len(locations) == 1, found
        path = Path(unquote(urlparse(locations[0]["uri"]).path))
        # a link in the build/ tree the install made; the file behind it is the source file
        assert path.resolve() == (source / module).resolve(), locations
        line = path.read_text().splitlines()[locations[0]["range"]["start"]["line"]]
        assert line.startswith(name), line


def test_a_module_added_after_the_install_says_to_reinstall(editable):
    source, python = editable["source"], editable["venv"] / "bin" / "python"
    added = source / "pipeline" / "added_later.py"
    added.write_text("VALUE = 1\n")
    try:
        proc = subprocess.run(
            [str(python), "-c", "import clap_corpus.pipeline.spec\nimport clap_corpus.pipeline.added_later"],
            cwd=editable["tmp"],
            capture_output=True,
            text=True,
            timeout=300,
            env=_env(editable["venv"]),
        )
    finally:
        added.unlink()
    assert proc.returncode == 1
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith("ModuleNotFoundError: No module named 'clap_corpus.pipeline.added_later'"), error
    assert f"{source / 'pipeline' / 'added_later'} exists" in error and "pip install -e ." in error


def test_files_next_to_the_modules_are_the_source_trees(editable):
    """Code that finds files next to its module (bench/, the tiny K2C model) finds the checkout's."""
    source, venv = editable["source"], editable["venv"]
    proc = subprocess.run(
        [venv / "bin" / "python", "-c", "from clap_corpus.k2c.presets import TINY_MODEL_DIR as d; print(d)"],
        cwd=editable["tmp"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(venv),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert Path(proc.stdout.strip()) == source / "k2c" / "tiny" / "model"
    proc = subprocess.run(
        [str(venv / "bin" / "clapcorpus"), "bench", "--help"],
        cwd=editable["tmp"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(venv),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bench_pipeline" in proc.stdout or "usage:" in proc.stdout


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_ci_runs_the_readme_test_command(page):
    """.ci/run is the README's test command (and Getting started's), so CI installs the way the README
    (and this file) does."""
    text = readme() if page == "README.md" else docs_page(page.removeprefix("docs/"))
    (command,) = [
        b
        for b in fenced_blocks(text, "bash")
        if "-m pytest" in b and "pip install -e '.[test]'" in b and "-m venv" in b
    ]
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if "pytest" in line]
    assert [" ".join(command.replace("\\\n", " ").split())] == [" ".join(line.split()) for line in ci]
