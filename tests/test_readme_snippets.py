"""The README's example and the documentation's reading snippets run as shown, after the README's demo
command."""

from __future__ import annotations

import contextlib
import io
import shlex

import pytest
from docs_text import block_after, docs_page, readme

from clap_corpus.pipeline.cli.main import main


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    # the README's demo command (its output is what the README's example shows)
    assert main(["demo", "--output", str(root / "demo-out"), "--runner=FnApiRunner"]) == 0
    return root


@pytest.mark.parametrize(
    ("page", "marker"),
    [("outputs.md", "Reading it back"), ("reading-the-output.md", "## Reading the output with other tools")],
)
def test_readme_reading_snippet_runs_against_the_demo_output(demo_folder, monkeypatch, page, marker):
    code = block_after(docs_page(page), marker, "python")
    assert "demo-out/corpus" in code
    monkeypatch.chdir(demo_folder)
    scope: dict = {}
    exec(compile(code, f"docs/{page} ({marker})", "exec"), scope)
    if "rate" in scope:  # the other-tools block: the FLAC bytes decode at the rate the features keep
        assert scope["rate"] == 48_000 and scope["raw"]["train"].features["audio"].sampling_rate == 48_000
        assert len(scope["df"]) == scope["ds"]["train"].num_rows
    else:
        assert scope["sr"] == 48_000 and scope["captions"]


def _lines(text: str) -> list[str]:
    return [" ".join(line.split()) for line in text.splitlines() if line.strip() and line.strip() != "..."]


def test_readme_example_runs_as_shown(demo_folder, monkeypatch, capsys):
    """The README's example, on the README's demo: the spec, the command, what it prints, the reader."""
    text = readme()
    spec = block_after(text, "## An example", "yaml")
    (command,) = block_after(text, "Build it:", "bash").strip().splitlines()
    printed = block_after(text, "the per-source table and the accounting (excerpt)", "")
    reader = block_after(text, "Read it back", "python")
    read_out = block_after(text, "then one line per training sample", "")
    # Getting started shows the same example
    started = docs_page("getting-started.md")
    for block in (spec, command, printed, reader, read_out):
        assert block in started

    monkeypatch.chdir(demo_folder)
    (demo_folder / "my_corpus.yaml").write_text(spec)
    argv = shlex.split(command)
    assert argv[:2] == [".venv/bin/clapcorpus", "run"]
    capsys.readouterr()
    assert main([*argv[1:], "--runner=FnApiRunner"]) == 0
    out = _lines(capsys.readouterr().out)
    shown = _lines(printed)
    assert shown[0].startswith("corpus 'mycorpus' -> ") and any(
        line.startswith("corpus 'mycorpus' -> ") and line.endswith("/out") for line in out
    )
    assert [line for line in shown[1:] if line not in out] == []

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        exec(compile(reader, "README.md (Read it back)", "exec"), {})
    assert [line for line in _lines(read_out) if line not in _lines(stdout.getvalue())] == []
