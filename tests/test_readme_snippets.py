"""The README's reading snippets run as shown, after the README's demo command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clap_corpus.pipeline.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _block_after(marker: str) -> str:
    start = README.index(marker)
    m = re.compile(r"```python\n(.*?)```", re.S).search(README, start)
    assert m is not None, marker
    return m.group(1)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    # the README's demo command, on fewer clips
    assert main(["demo", "--output", str(root / "demo-out"), "--clips", "12", "--runner=FnApiRunner"]) == 0
    return root


@pytest.mark.parametrize("marker", ["Reading it back", "### Reading the output with other tools"])
def test_readme_reading_snippet_runs_against_the_demo_output(demo_folder, monkeypatch, marker):
    code = _block_after(marker)
    assert "demo-out/corpus" in code
    monkeypatch.chdir(demo_folder)
    scope: dict = {}
    exec(compile(code, f"README.md ({marker})", "exec"), scope)
    if "rate" in scope:  # the other-tools block: the FLAC bytes decode at the rate the features keep
        assert scope["rate"] == 48_000 and scope["raw"]["train"].features["audio"].sampling_rate == 48_000
        assert len(scope["df"]) == scope["ds"]["train"].num_rows
    else:
        assert scope["sr"] == 48_000 and scope["captions"]
