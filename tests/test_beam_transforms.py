"""The Beam steps of the graph and the duplicates passes, each on its own in a TestPipeline.

A few records per pipeline, pinned to FnApiRunner; audio only where the step reads it (real encoded
files). The whole graph is run end to end by test_pipeline.py and test_duplicates_cross_split.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.pvalue import AsDict
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from helpers.records import make_record

from clap_corpus.core.layout import Layout
from clap_corpus.core.records import Reject
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.spec.corpus import parse_spec
from clap_corpus.pipeline.stages.duplicates import (
    DropDuplicates,
    DuplicateReport,
    HeldOutAudioSet,
    WriteDropped,
    decoded_digest,
)
from clap_corpus.pipeline.stages.graph import (
    REJECTS,
    RenderCaptionsFn,
    ShardBoundariesFn,
    WriteEarlyRejectsFn,
    _shard_key,
)
from clap_corpus.transforms.heldout import HeldOutAudio
from clap_corpus.transforms.sharding import placement_hash, shard_boundaries
from clap_corpus.transforms.shards import ShardStats
from clap_corpus.transforms.stage_output import EXACT_GROUPS

RATE = 16_000


def _pipeline() -> beam.Pipeline:
    return test_pipeline.TestPipeline(runner="FnApiRunner")


def test_shard_boundaries_and_assignment():
    keys = [f"k{i}" for i in range(7)]
    expected = shard_boundaries((placement_hash(k) for k in keys), 3)
    assert len(expected) == 2  # three shards: 3, 3 and 1 records
    records = [make_record(k, source="lib", split="train") for k in keys] + [
        make_record("v0", source="lib", split="valid")
    ]
    with _pipeline() as p:
        placed = p | beam.Create(records)
        boundaries = (
            placed
            | "Hashes" >> beam.Map(lambda r: (r.split, placement_hash(r.key)))
            | "Cut" >> beam.CombinePerKey(ShardBoundariesFn(3))
        )
        assert_that(boundaries, equal_to([("train", expected), ("valid", [])]), label="boundaries")
        sizes = (
            placed
            | "Assign" >> beam.Map(_shard_key, AsDict(boundaries))
            | "Group" >> beam.GroupByKey()
            | "Sizes" >> beam.MapTuple(lambda shard, rs: (shard, len(list(rs))))
        )
        assert_that(
            sizes,
            equal_to(
                [
                    (("train", "000000"), 3),
                    (("train", "000001"), 3),
                    (("train", "000002"), 1),
                    (("valid", "000000"), 1),
                ]
            ),
            label="sizes",
        )


def test_captions_step_renders_or_rejects():
    records = [
        make_record("a", source="lib", split="train", captions=("a dog barks",)),
        make_record("b", source="lib", split="train"),
        make_record("c", source="lib", split="train", labels=("Rain",)),
    ]
    with _pipeline() as p:
        out = (
            p | beam.Create(records) | beam.ParDo(RenderCaptionsFn(200)).with_outputs(REJECTS, main="records")
        )
        assert_that(
            out.records | "Texts" >> beam.Map(lambda r: (r.key, r.caption_kind, bool(r.text))),
            equal_to([("a", "source", True), ("c", "template", True)]),
            label="records",
        )
        assert_that(
            out[REJECTS] | "Codes" >> beam.Map(lambda r: (r.key, r.code)),
            equal_to([("b", "no_text")]),
            label="rejects",
        )


def test_early_rejects_are_written_per_source_in_row_order(tmp_path):
    def reject(source: str, row: int | None, code: str) -> Reject:
        return Reject(source=source, stage="manifest", code=code, reason="r", row=row)

    rejects = [
        reject("s1", 5, "malformed_row"),
        reject("s1", None, "missing_path"),
        reject("s1", 2, "malformed_row"),
        reject("s2", 1, "bad_split"),
    ]
    layout = Layout(str(tmp_path), "c")
    with _pipeline() as p:
        counts = (
            p
            | beam.Create(rejects)
            | beam.Map(lambda r: (r.source, r))
            | beam.GroupByKey()
            | beam.ParDo(WriteEarlyRejectsFn(layout))
        )
        assert_that(
            counts, equal_to([("s1", {"malformed_row": 2, "missing_path": 1}), ("s2", {"bad_split": 1})])
        )
    lines = Path(layout.manifest_rejects_path("s1")).read_text().splitlines()
    assert [json.loads(line)["row"] for line in lines] == [None, 2, 5]


def _spec(tmp_path: Path, **options):
    """A spec whose two sources share the audio folder (the records are made by the tests)."""
    (tmp_path / "audio").mkdir(exist_ok=True)
    for manifest in ("m.jsonl", "m2.jsonl"):
        (tmp_path / manifest).write_text("")
    doc = {
        "corpus": "c",
        "options": {"store_mel": False, **options},
        "sources": [
            {"name": "lib", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "audio"},
            {"name": "more", "adapter": "generic", "manifest": "m2.jsonl", "audio_root": "audio"},
        ],
    }
    return parse_spec(doc, str(tmp_path / "spec.yaml"))


@pytest.fixture
def clips(tmp_path) -> dict[str, str]:
    """Paths of real encoded clips: a1/a2/a3 hold the same PCM (WAV and FLAC), b and c others."""
    folder = tmp_path / "audio"
    folder.mkdir()
    pcm = {
        "a": synth.tone(440.0, 0.5, RATE),
        "b": synth.tone(550.0, 0.5, RATE),
        "c": synth.tone(660.0, 0.5, RATE),
    }
    out = {}
    for name, which, fmt in (
        ("a1", "a", "wav"),
        ("a2", "a", "flac"),
        ("a3", "a", "wav"),
        ("b", "b", "wav"),
        ("c", "c", "flac"),
    ):
        path = folder / f"{name}.{fmt}"
        path.write_bytes(synth.encode_audio(pcm[which], RATE, fmt))
        out[name] = str(path)
    return out


@pytest.mark.parametrize(
    ("mode", "kept", "rejected"),
    [
        ("keep_first", ["a1", "b", "c"], ["a2", "a3", "gone"]),
        ("drop_all", ["b", "c"], ["a1", "a2", "a3", "gone"]),
    ],
)
def test_drop_duplicates(tmp_path, clips, mode, kept, rejected):
    spec = _spec(tmp_path, duplicates=mode)
    records = [
        make_record("a3", source="lib", split="train", audio=clips["a3"]),
        make_record("a2", source="more", split="train", audio=clips["a2"]),
        # held out: the copy keep_first keeps
        make_record("a1", source="more", split="valid", audio=clips["a1"]),
        make_record("b", source="lib", split="train", audio=clips["b"]),
        make_record("c", source="lib", split="train", audio=clips["c"]),
        make_record("gone", source="lib", split="train", audio=str(tmp_path / "audio" / "missing.wav")),
    ]
    layout = Layout(str(tmp_path / "out"), "c")
    with _pipeline() as p:
        out = p | beam.Create(records) | DropDuplicates(spec)
        assert_that(out.records | "Kept" >> beam.Map(lambda r: r.key), equal_to(kept), label="kept")
        assert_that(
            out.rejects | "Rejected" >> beam.Map(lambda r: r.key), equal_to(rejected), label="rejected"
        )
        assert_that(
            out.extras[EXACT_GROUPS]
            | "WriteDuplicates" >> WriteDropped(spec, layout)
            | "Groups" >> beam.MapTuple(lambda stage, rep: (stage, rep["groups"], rep["removed"])),
            equal_to([("duplicates", 1, len(rejected) - 1)]),  # "gone" is in no group
            label="report",
        )
    group = json.loads(Path(layout.duplicates_path()).read_text())
    assert [m["key"] for m in group["samples"]] == ["a1", "a3", "a2"]  # held out, then source order, then key
    assert [m["kept"] for m in group["samples"]] == [mode == "keep_first", False, False]


def test_held_out_audio_set(tmp_path, clips):
    spec = _spec(tmp_path)
    digest_a = decoded_digest(Path(clips["a1"]).read_bytes(), spec.options.sample)
    digest_c = decoded_digest(Path(clips["c"]).read_bytes(), spec.options.sample)
    records = [
        make_record("a3", source="lib", split="test", audio=clips["a3"]),
        # the same audio held out twice: the smaller holder is named
        make_record("a1", source="lib", split="valid", audio=clips["a1"]),
        make_record("c", source="more", split="test", audio=clips["c"]),
        make_record("b", source="lib", split="train", audio=clips["b"]),  # trained on: not part of the set
        # its own shard rejects it
        make_record("gone", source="lib", split="test", audio=str(tmp_path / "audio" / "missing.wav")),
    ]
    expected = HeldOutAudio.build([(digest_a, ("lib", "test", "a3")), (digest_c, ("more", "test", "c"))])
    assert expected.holders[digest_a] == ("lib", "test", "a3")
    with _pipeline() as p:
        assert_that(
            p | "Some" >> beam.Create(records) | "Set" >> HeldOutAudioSet(spec),
            equal_to([expected]),
            label="set",
        )
        # no record is trained on: nothing to check against, nothing decoded (a missing file would not matter)
        only_heldout = [r for r in records if r.split != "train"]
        assert_that(
            p | "NoTrain" >> beam.Create(only_heldout) | "Empty" >> HeldOutAudioSet(spec),
            equal_to([HeldOutAudio.build([])]),
            label="empty",
        )


def test_duplicate_report_from_shard_stats(tmp_path):
    def stats(split: str, shard: str, hashes, removed=()) -> ShardStats:
        return ShardStats(
            split=split,
            shard=shard,
            fingerprint="f",
            samples=len(hashes),
            rejects=len(removed),
            audio_hashes=tuple(hashes),
            overlap_removed=tuple(removed),
        )

    shards = [
        stats("train", "000000", [("t1", "lib", "dA"), ("t2", "lib", "dB")], removed=[("t3", "lib", "dC")]),
        stats("train", "000001", [("t4", "lib", "dB"), ("t5", "lib", "dD")]),
        stats("test", "000000", [("h1", "lib", "dC")]),
    ]
    spec = _spec(tmp_path)
    layout = Layout(str(tmp_path / "out"), "c")
    with _pipeline() as p:
        report = p | beam.Create(shards) | DuplicateReport(spec, layout)
        assert_that(
            report
            | beam.MapTuple(
                lambda stage, r: (
                    stage,
                    r["mode"],
                    r["groups"],
                    r["samples_in_groups"],
                    r["removed"],
                    r["cross_split"]["groups"],
                )
            ),
            equal_to([("duplicates", "report", 2, 4, 1, 1)]),
        )
    groups = [json.loads(line) for line in Path(layout.duplicates_path()).read_text().splitlines()]
    assert [(g["digest"], [(m["key"], m["kept"]) for m in g["samples"]]) for g in groups] == [
        ("dC", [("h1", True), ("t3", False)]),
        ("dB", [("t2", True), ("t4", True)]),
    ]
