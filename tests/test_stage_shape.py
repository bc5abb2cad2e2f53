"""One stage shape: every record stage the graph runs returns a StageOutput, and the graph runs
the stages its lists name, in order, collecting their rejects, reports and extras (graphs built, not run)."""

from __future__ import annotations

import itertools
import json

import apache_beam as beam
import pytest
import yaml
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.pvalue import PCollection
from clap_models import tiny_clap_model

from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.spec.corpus import CorpusSpec, load_spec
from clap_corpus.pipeline.stages import graph
from clap_corpus.pipeline.stages.graph import (
    BuildCorpus,
    model_stages,
    stages_after_split,
    stages_before_split,
)
from clap_corpus.pipeline.stages.leakage import guard_only_out
from clap_corpus.transforms import stage_output
from clap_corpus.transforms.stage_output import StageOutput

# Every record stage, in graph order, when every option that adds one is on.
EVERY_STAGE = ["Fetch", "K2C", "ExclusionLists", "LeakageGuard", "DropDuplicates", "CLAP"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def every_stage(tmp_path_factory) -> CorpusSpec:
    """The demo corpus with every record stage on: a web source (fetch), K2C, an exclusion list, the
    leakage guard (default), keep_first duplicates, CLAP scoring, and a guard-only source."""
    root = tmp_path_factory.mktemp("every_stage")
    model = tiny_clap_model(str(root / "tinyclap"))
    (root / "bl.json").write_text(json.dumps({"FreeSound": [166426]}))
    options = {
        "clap": {"model": model, "near_duplicate_threshold": 0.99},
        "duplicates": "keep_first",
        "exclude": [{"files": str(root / "bl.json")}],
    }
    path = write_demo_corpus(str(root / "src"), n_clips=4, k2c_model="tiny", extra_options=options)
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    copy = {k: v for k, v in doc["sources"][0].items() if k != "split_map"}
    doc["sources"].append({**copy, "name": "esc50", "guard": True, "split": "test"})
    web = {"allowed_schemes": ["https"], "allowed_hosts": ["media.example.org"]}
    doc["sources"].append({**copy, "name": "web", **web})
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return load_spec(path)


def _stage_lists(spec: CorpusSpec, layout: Layout) -> list[tuple[str, beam.PTransform]]:
    return [
        *stages_before_split(spec, layout, False),
        *stages_after_split(spec),
        *model_stages(spec, layout, None),
    ]


def _check_shape(out: object, label: str) -> None:
    assert isinstance(out, StageOutput), f"{label} returned {type(out).__name__}"
    assert isinstance(out.records, PCollection), label
    for part in (out.rejects, out.report, *out.extras.values()):
        assert part is None or isinstance(part, PCollection), (label, part)


def _declared_extras() -> set[str]:
    return {v for k, v in vars(stage_output).items() if k.isupper() and isinstance(v, str)}


def test_every_record_stage_returns_a_stage_output(every_stage, tmp_path):
    layout = Layout(str(tmp_path / "out"), every_stage.corpus)
    stages = _stage_lists(every_stage, layout)
    assert [label for label, _ in stages] == EVERY_STAGE
    p = beam.Pipeline(runner="FnApiRunner")
    records = p | beam.Create([])
    given: list[str] = []
    for label, stage in stages:
        out = records | label >> stage
        _check_shape(out, label)
        given += out.extras
    out = guard_only_out(every_stage, records)
    _check_shape(out, "GuardOnlyOut")
    given += out.extras
    # each extra declared once in stage_output, and given by exactly one stage
    assert sorted(given) == sorted(_declared_extras())


def _applied(p: beam.Pipeline) -> dict[str, AppliedPTransform]:
    found: dict[str, AppliedPTransform] = {}

    class Visitor(PipelineVisitor):
        def enter_composite_transform(self, node):
            found[node.full_label] = node

        def visit_transform(self, node):
            found[node.full_label] = node

    p.visit(Visitor())
    return found


class Probe(beam.PTransform):
    """A record stage added in one line: passes records on, one reject and one report of its own."""

    def expand(self, records) -> StageOutput:
        p = records.pipeline
        reject = Reject("synthetic", Stage.DUPLICATE, Code.DUPLICATE_AUDIO, "a probe", key="probe")
        return StageOutput(
            records | "Pass" >> beam.Map(lambda r: r),
            p | "ProbeReject" >> beam.Create([reject]),
            p | "ProbeReport" >> beam.Create([("probe", {})]),
            {"probe_extra": p | "ProbeExtra" >> beam.Create([1])},
        )


def test_the_graph_runs_its_stage_lists_in_order(every_stage, tmp_path, monkeypatch):
    after_split = graph.stages_after_split
    monkeypatch.setattr(graph, "stages_after_split", lambda spec: [*after_split(spec), ("Probe", Probe())])
    p = beam.Pipeline(runner="FnApiRunner")
    _ = p | "BuildCorpus" >> BuildCorpus(every_stage, str(tmp_path / "out"))
    applied = _applied(p)
    build = applied["BuildCorpus"]
    order = [t.full_label.removeprefix("BuildCorpus/") for t in build.parts]
    labels = [*EVERY_STAGE[:-1], "Probe", "CLAP"]
    ran = [label for label in order if label in labels]
    assert ran == labels
    # each one's records feed the next (the split sits between K2C and the exclusion lists)
    for before, after in itertools.pairwise(ran):
        records = applied[f"BuildCorpus/{before}"].outputs["records"]
        consumers = [t.full_label for t in applied.values() if records in t.main_inputs.values()]
        expected = "BuildCorpus/Split" if before == "K2C" else f"BuildCorpus/{after}/"
        assert any(c.startswith(expected) for c in consumers), (before, consumers)
    # a stage's outputs are the StageOutput's fields, by name; extras by their declared names
    fields = {"records", "rejects", "report", *(f"extras.{n}" for n in [*_declared_extras(), "probe_extra"])}
    for label in labels:
        tags = set(applied[f"BuildCorpus/{label}"].outputs)
        assert "records" in tags and tags <= fields, (label, tags)
    # every stage's rejects reach the early rejects, and its report the summary's stages
    early = set(applied["BuildCorpus/EarlyRejects"].main_inputs.values())
    reports = set(applied["BuildCorpus/StageReports"].main_inputs.values())
    for label in labels:
        outputs = applied[f"BuildCorpus/{label}"].outputs
        assert "rejects" not in outputs or outputs["rejects"] in early, label
        assert "report" not in outputs or outputs["report"] in reports, label
    probe = applied["BuildCorpus/Probe"].outputs
    assert probe["rejects"] in early and probe["report"] in reports
    # the extras flow to the steps that need them
    for stage, extra, step in (
        ("Fetch", stage_output.FETCH_STATUS, "FetchCounts"),
        ("DropDuplicates", stage_output.EXACT_GROUPS, "DuplicateGroupsOut"),
        ("CLAP", stage_output.NEAR_GROUPS, "DuplicateGroupsOut"),
    ):
        consumer = applied[f"BuildCorpus/{step}"]
        side = [si.pvalue for si in consumer.side_inputs] + [
            si.pvalue for part in _parts(consumer) for si in part.side_inputs
        ]
        pcoll = applied[f"BuildCorpus/{stage}"].outputs[f"extras.{extra}"]
        assert pcoll in [*consumer.main_inputs.values(), *side], (stage, extra, step)


def _parts(t: AppliedPTransform) -> list[AppliedPTransform]:
    return [q for part in t.parts for q in (part, *_parts(part))]
