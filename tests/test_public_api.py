"""The public API, ``from clap_corpus import ...`` (docs/api.md): the names resolve, importing the
package loads no Apache Beam, and the page's examples run as shown: BuildCorpus inside a Beam pipeline
of one's own builds the corpus run_corpus builds, byte for byte."""

from __future__ import annotations

import subprocess
import sys

from docs_text import block_after, docs_page

import clap_corpus
from bench.digest_outputs import digests
from clap_corpus import BuildCorpus, load_spec, run_corpus
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus as run_corpus_home
from clap_corpus.pipeline.outputs.summary_model import RunSummary as RunSummaryHome
from clap_corpus.pipeline.spec.corpus import load_spec as load_spec_home
from clap_corpus.pipeline.stages.graph import BuildCorpus as BuildCorpusHome


def test_every_public_name_is_the_object_its_module_defines():
    homes = {
        "BuildCorpus": BuildCorpusHome,
        "Code": Code,
        "Record": Record,
        "Reject": Reject,
        "RunSummary": RunSummaryHome,
        "load_spec": load_spec_home,
        "run_corpus": run_corpus_home,
    }
    assert sorted(clap_corpus.__all__) == sorted(homes)
    for name, obj in homes.items():
        assert getattr(clap_corpus, name) is obj, name
        assert name in dir(clap_corpus)
    assert (BuildCorpus, load_spec, run_corpus) == (BuildCorpusHome, load_spec_home, run_corpus_home)


def test_importing_the_package_or_its_records_loads_no_beam(tmp_path):
    """`import clap_corpus` runs before every `import clap_corpus.core...` (the trainer's too); the
    records come without Beam, the pipeline's names with it, when first asked for."""
    code = """
import sys
import clap_corpus
assert "apache_beam" not in sys.modules, "import clap_corpus"
from clap_corpus import Code, Record, Reject
assert "apache_beam" not in sys.modules, "from clap_corpus import Record"
from clap_corpus import BuildCorpus
assert "apache_beam" in sys.modules
try:
    clap_corpus.no_such_name
except AttributeError as e:
    print(e)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "module 'clap_corpus' has no attribute 'no_such_name'"


def _run_example(heading: str) -> dict:
    code = block_after(docs_page("api.md"), heading, "python")
    scope: dict = {}
    exec(compile(code, f"docs/api.md ({heading})", "exec"), scope)
    return scope


def test_the_api_page_examples_build_the_same_corpus_both_ways(tmp_path, monkeypatch, capsys):
    """docs/api.md's examples, run as shown on a small demo source: run_corpus, then BuildCorpus inside
    a pipeline of one's own, then the rejects read back with Code. Same bytes from both builds."""
    spec_path = write_demo_corpus(str(tmp_path), n_clips=6, max_seconds=3.0, shard_size=2, k2c_model=None)
    assert spec_path == str(tmp_path / "spec.yaml")
    monkeypatch.chdir(tmp_path)

    summary = _run_example("## Building from Python")["summary"]
    assert summary["samples"] == 6 and summary["accounting_ok"]
    _run_example("## BuildCorpus inside your own pipeline")
    printed = capsys.readouterr().out
    assert "6 samples; accounting holds" in printed and "demo: 6 samples" in printed

    ours, theirs = digests("out/mine"), digests("out/corpus")
    assert any(path.endswith(".tar") for _, _, path in ours)
    assert ours == theirs

    _run_example("## Records")
    counted = capsys.readouterr().out.splitlines()
    assert counted and sum(int(line.split()[0]) for line in counted) == summary["rejects"]
    assert any(f"{Code.MISSING_FILE}: {Code.MISSING_FILE.meaning}" in line for line in counted)
