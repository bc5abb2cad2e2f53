"""The run summary's model (pipeline/outputs/summary_model.py) on a real build: summary.json read
through it and written back gives the same bytes, and a summary of an older version (keys missing,
keys this version does not know) still reads and redraws its report."""

from __future__ import annotations

import copy
import json
import shutil

import pydantic
import pytest

from clap_corpus.pipeline.cli.main import main as cli_main
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import NotRun, RunSummary, run_result_from_json

RUNNER = ["--runner=FnApiRunner"]

# Keys added to summary.json after its first version: a summary without them must still read.
LATER_KEYS = (
    "empty_sources",
    "k2c_skipped_short",
    "incomplete",
    "silent",
    "storage",
    "stages",
    "distributions",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The demo corpus (K2C, broken rows, three splits), as tests/test_report.py builds it, smaller."""
    src = tmp_path_factory.mktemp("summary_src")
    spec = write_demo_corpus(str(src), n_clips=6, max_seconds=8.0, shard_size=3)
    out = tmp_path_factory.mktemp("summary_out")
    returned = run_corpus(spec, str(out), RUNNER)
    return out, returned


def test_summary_json_round_trips_byte_for_byte(built):
    out, returned = built
    written = (out / "summary.json").read_bytes()
    summary = RunSummary.read(str(out / "summary.json"))
    assert summary.to_json_bytes() == written
    assert RunSummary.from_json(json.loads(written)).to_json_bytes() == written
    # the typed reads see what the file says
    doc = json.loads(written)
    assert summary.samples == doc["samples"] > 0 and summary.accounting_ok is True
    assert {n: s.samples for n, s in summary.sources.items()} == {
        n: s["samples"] for n, s in doc["sources"].items()
    }
    assert summary.stages["k2c"] == doc["stages"]["k2c"] and summary.wall_seconds is None
    # run_corpus's JSON data: the file's document plus the launcher's wall time, nothing else
    assert {k: v for k, v in returned.items() if k != "wall_seconds"} == doc and returned["wall_seconds"] > 0


def test_the_model_declares_every_key_a_summary_has(built):
    """A key the writer adds without declaring it would be kept as an unknown one: refuse that here."""
    out, _ = built
    doc = json.loads((out / "summary.json").read_text())
    summary = RunSummary.from_json(doc)
    assert set(doc) == set(RunSummary.model_fields) - {"wall_seconds"}
    assert not summary.model_extra
    for name, source in summary.sources.items():
        assert not source.model_extra, name
        assert set(doc["sources"][name]) <= set(type(source).model_fields)
    assert all(not s.model_extra for s in summary.splits.values())
    assert not summary.outputs.model_extra and all(not f.model_extra for f in summary.storage.values())


def _older(doc: dict) -> dict:
    """``doc`` as a summary of another version: the later keys gone, keys this version does not know."""
    old = copy.deepcopy(doc)
    for key in LATER_KEYS:
        del old[key]
    for source in old["sources"].values():
        del source["expected_delta"]
        source["a_retired_count"] = 3
    for split in old["splits"].values():
        del split["hours"]
    old["a_retired_section"] = {"kept": [1, 2]}
    return old


def test_an_older_summary_reads_keeps_unknown_keys_and_adds_none(built):
    out, _ = built
    old = _older(json.loads((out / "summary.json").read_text()))
    summary = RunSummary.from_json(old)
    # what was read is what is written: no default filled in, no unknown key dropped
    assert summary.to_json_dict() == old
    assert summary.model_extra == {"a_retired_section": {"kept": [1, 2]}}
    # the readers' defaults for what it lacks
    assert (summary.silent, summary.empty_sources, summary.stages, summary.distributions) == (0, [], {}, {})
    assert all(s.expected_delta is None for s in summary.sources.values())
    assert "0 silent rejected" in format_report(summary)


def test_the_report_command_redraws_an_older_summary(built, tmp_path):
    out, _ = built
    copy_dir = tmp_path / "copy"
    shutil.copytree(out, copy_dir)
    old = _older(json.loads((out / "summary.json").read_text()))
    old["output"] = str(copy_dir)  # the report and card go where the summary says the corpus is
    (copy_dir / "summary.json").write_text(json.dumps(old, indent=2))
    for name in ("README.md", "report/index.html", "report/report.json"):
        (copy_dir / name).unlink()
    assert cli_main(["report", "--output", str(copy_dir)]) == 0
    card = (copy_dir / "README.md").read_text()
    assert f"{old['samples']:,} audio-caption pairs" in card and "Record stages" not in card
    report = json.loads((copy_dir / "report" / "report.json").read_text())
    assert report["totals"]["samples"] == old["samples"] and report["stages"] == {}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(samples="10"), "samples"),  # strict: a string is not a count
        (lambda d: d.pop("corpus"), "corpus"),  # in every summary since the first: required
        (lambda d: d["sources"][next(iter(d["sources"]))].update(hours=None), "hours"),
        (lambda d: d.update(stages={"k2c": [1, 2]}), "stages"),  # a stage's report is a JSON object
    ],
)
def test_an_ill_typed_summary_is_refused(built, change, field):
    out, _ = built
    doc = json.loads((out / "summary.json").read_text())
    change(doc)
    with pytest.raises(pydantic.ValidationError, match=field):
        RunSummary.from_json(doc)


def test_a_summary_is_read_only_and_a_launch_that_ran_nothing_is_typed_too(built):
    out, _ = built
    summary = RunSummary.read(str(out / "summary.json"))
    with pytest.raises(pydantic.ValidationError):
        summary.samples = 0  # type: ignore[misc]
    not_run = run_result_from_json({"not_run": "dry run", "corpus": "demo", "output": "/x"})
    assert isinstance(not_run, NotRun) and format_report(not_run) == "corpus 'demo' -> /x: dry run"
    assert isinstance(run_result_from_json(summary.to_json_dict()), RunSummary)
