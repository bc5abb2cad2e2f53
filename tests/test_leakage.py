"""The leakage guard: pure rules, and the Beam transform on records (no audio needed)."""

import apache_beam as beam
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from helpers.records import make_record

from clap_corpus.pipeline.stages.leakage import LeakageGuard, Removal, find_overlap, guard, heldout_origins
from clap_corpus.transforms.duplicate_groups import preference
from clap_corpus.transforms.stage_output import GUARD_RECORDS

TRAIN = ("train", "balanced_train", "unbalanced_train")


def test_held_out_origins_and_guard_rules():
    test_clip = make_record("ac1", source="audiocaps_test", split="test", origin_ids=("youtube:AAA",))
    assert heldout_origins(test_clip, TRAIN) == [("youtube:AAA", ("audiocaps_test", "test", "ac1"))]
    assert (
        heldout_origins(
            make_record("k", source="as", split="unbalanced_train", origin_ids=("youtube:AAA",)), TRAIN
        )
        == []
    )
    heldout = dict(heldout_origins(test_clip, TRAIN))
    leaked = make_record(
        "as1", source="audioset", split="unbalanced_train", origin_ids=("youtube:BBB", "youtube:AAA")
    )
    out = guard(leaked, heldout, TRAIN)
    assert isinstance(out, Removal) and out.overlap == ("audioset", "audiocaps_test/test")
    assert (out.reject.stage, out.reject.code, out.reject.key, out.reject.row) == (
        "leakage",
        "eval_overlap",
        "as1",
        1,
    )
    assert out.reject.reason == (
        "youtube:AAA is also in split 'test' of source 'audiocaps_test' (sample ac1); "
        "removed from split 'unbalanced_train'"
    )
    # held-out records themselves, records without origins and other ids pass
    assert guard(test_clip, heldout, TRAIN) is test_clip
    assert guard(make_record("k", source="x", split="train"), heldout, TRAIN).key == "k"
    assert (
        find_overlap(make_record("k", source="x", split="train", origin_ids=("youtube:CCC",)), heldout, TRAIN)
        is None
    )
    # a split the spec does not call train-like is held out, not guarded
    assert (
        guard(make_record("k", source="x", split="dev", origin_ids=("youtube:AAA",)), heldout, TRAIN).key
        == "k"
    )


def test_duplicate_preference_keeps_held_out_copies():
    order = {"a": 0, "b": 1}
    members = [("k9", "a", "train"), ("k1", "b", "train"), ("k5", "b", "valid"), ("k2", "a", "train")]
    assert sorted(members, key=lambda m: preference(m, order, TRAIN)) == [
        ("k5", "b", "valid"),
        ("k2", "a", "train"),
        ("k9", "a", "train"),
        ("k1", "b", "train"),
    ]


def test_leakage_guard_transform():
    records = [
        make_record("ac1", source="audiocaps_test", split="test", origin_ids=("youtube:AAA",)),
        # the same clip held out twice
        make_record("ac2", source="audiocaps_val", split="valid", origin_ids=("youtube:AAA",)),
        make_record("cl1", source="clotho_eval", split="test", origin_ids=("freesound:7",)),
        make_record("as1", source="audioset", split="unbalanced_train", origin_ids=("youtube:AAA",)),
        make_record("as2", source="audioset", split="unbalanced_train", origin_ids=("youtube:ZZZ",)),
        make_record("fs1", source="freesound", split="train", origin_ids=("freesound:7",)),
        make_record("fs2", source="freesound", split="train", origin_ids=("freesound:8",)),
    ]
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(records) | LeakageGuard(TRAIN)
        assert_that(
            out.records | "Keys" >> beam.Map(lambda r: r.key),
            equal_to(["ac1", "ac2", "cl1", "as2", "fs2"]),
            label="kept",
        )
        assert_that(
            out.rejects | "Why" >> beam.Map(lambda r: (r.key, r.reason.split(" (sample")[0])),
            equal_to(
                [
                    # two holders of youtube:AAA: the smallest (source, split, key) is named
                    ("as1", "youtube:AAA is also in split 'test' of source 'audiocaps_test'"),
                    ("fs1", "freesound:7 is also in split 'test' of source 'clotho_eval'"),
                ]
            ),
            label="removed",
        )
        assert_that(
            out.report,
            equal_to(
                [
                    (
                        "leakage",
                        {
                            "train_splits": list(TRAIN),
                            "heldout_origin_ids": 2,
                            "removed": 2,
                            "removed_by_source": {"audioset": 1, "freesound": 1},
                            "removed_by_overlap": {
                                "audioset <- audiocaps_test/test": 1,
                                "freesound <- clotho_eval/test": 1,
                            },
                        },
                    )
                ]
            ),
            label="report",
        )


def test_a_guard_only_source_guards_by_id_and_is_never_written(tmp_path):
    """A source with `guard: true`: its records are placed in split `guard` (held out), so the id
    guard removes the training clips that share an origin with them; then they end as `guard_only`
    rejects instead of reaching a shard."""
    import yaml

    from clap_corpus.pipeline.demo.corpus import write_demo_corpus
    from clap_corpus.pipeline.spec.corpus import load_spec
    from clap_corpus.pipeline.stages.graph import _with_split
    from clap_corpus.pipeline.stages.leakage import guard_only_out

    spec_path = write_demo_corpus(str(tmp_path / "src"), n_clips=2, k2c_model=None, bad_rows=False)
    with open(spec_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    # a copy of the demo source with one split of its own (a split_map beside it would be refused)
    copy = {k: v for k, v in doc["sources"][0].items() if k != "split_map"}
    doc["sources"].append({**copy, "name": "esc50", "guard": True, "split": "test"})
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    spec = load_spec(spec_path)
    records = [
        # its own split does not matter
        _with_split(make_record("g1", source="esc50", split="test", origin_ids=("freesound:7",)), spec),
        make_record("fs1", source="synthetic", split="train", origin_ids=("freesound:7",)),
        make_record("fs2", source="synthetic", split="train", origin_ids=("freesound:8",)),
    ]
    assert records[0].split == "guard"
    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(records) | LeakageGuard(TRAIN)
        only = guard_only_out(spec, out.records)
        kept, guards = only.records, only.extras[GUARD_RECORDS]
        assert_that(kept | "Kept" >> beam.Map(lambda r: r.key), equal_to(["fs2"]), label="kept")
        assert_that(guards | "Guards" >> beam.Map(lambda r: r.key), equal_to(["g1"]), label="guards")
        assert_that(
            (out.rejects, only.rejects)
            | beam.Flatten()
            | "Why" >> beam.Map(lambda r: (r.key, r.stage, r.code, r.reason[:40])),
            equal_to(
                [
                    ("fs1", "leakage", "eval_overlap", "freesound:7 is also in split 'guard' of "),
                    ("g1", "guard", "guard_only", "a clip of a guard-only source: training "),
                ]
            ),
            label="rejects",
        )
