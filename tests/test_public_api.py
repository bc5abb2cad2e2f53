"""The public API, ``from clap_corpus import ...`` (docs/api.md): the names resolve, importing the
package loads no Apache Beam, and BuildCorpus inside a Beam pipeline of the user's own builds the
corpus run_corpus builds, byte for byte."""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

import clap_corpus
from bench.digest_outputs import digests
from clap_corpus import BuildCorpus, load_spec, run_corpus
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus as run_corpus_home
from clap_corpus.pipeline.spec.corpus import load_spec as load_spec_home
from clap_corpus.pipeline.stages.graph import BuildCorpus as BuildCorpusHome

RUNNER = ["--runner=FnApiRunner"]  # in this process: small and quick


def test_every_public_name_is_the_object_its_module_defines():
    homes = {
        "BuildCorpus": BuildCorpusHome,
        "Code": Code,
        "Record": Record,
        "Reject": Reject,
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


def test_build_corpus_in_a_pipeline_of_ones_own_builds_what_run_corpus_builds(tmp_path):
    spec_path = write_demo_corpus(
        str(tmp_path / "source"), n_clips=6, max_seconds=3.0, shard_size=2, k2c_model=None
    )
    summary = run_corpus(spec_path, str(tmp_path / "run_corpus"), RUNNER)
    assert summary["samples"] == 6 and summary["accounting_ok"]

    spec = load_spec(spec_path)
    with beam.Pipeline(options=PipelineOptions(RUNNER)) as p:
        built = p | "BuildCorpus" >> BuildCorpus(spec, str(tmp_path / "own"))
        # the job's one output is the run summary: a user's pipeline goes on from there
        assert_that(built | beam.Map(lambda s: (s["samples"], s["accounting_ok"])), equal_to([(6, True)]))

    ours, theirs = digests(str(tmp_path / "own")), digests(str(tmp_path / "run_corpus"))
    assert any(path.endswith(".tar") for _, _, path in ours)
    assert ours == theirs
