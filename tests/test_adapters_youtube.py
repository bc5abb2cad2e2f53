"""AudioSet and AudioCaps adapters on copies of the real files (tests/fixtures_sources.py)."""

from dataclasses import replace

import pytest
from fixtures_sources import AS_TRAIN, LEAK

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.audiocaps import read_audiocaps
from clap_corpus.manifests.audioset import read_audioset, youtube_id_of_stem
from clap_corpus.manifests.source import SourceSpec


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def _audioset(root, csv="unbalanced_train_segments.csv", audio="unbalanced_train", **options):
    return SourceSpec(
        name="as",
        adapter="audioset",
        manifest=str(root / "audioset" / csv),
        audio_root=str(root / "audioset" / "audio" / audio),
        options={"class_index": str(root / "audioset" / "class_labels_indices.csv"), **options},
        license="CC-BY-4.0",
    )


@pytest.mark.parametrize(
    ("stem", "ytid"),
    [
        ("Y--PJHxphWEs", "--PJHxphWEs"),
        ("--PJHxphWEs", "--PJHxphWEs"),
        ("-0RWZT-miFs_420.000_430.000", "-0RWZT-miFs"),
        ("Y-0RWZT-miFs_420000_430000", "-0RWZT-miFs"),
        ("Yb0RFKhbpFJ", "Yb0RFKhbpFJ"),  # an id that starts with "Y" and no prefix
        ("YYb0RFKhbpFJ", "Yb0RFKhbpFJ"),
        ("short", None),
        ("--PJHxphWEs_x", None),
    ],
)
def test_youtube_id_of_file_stem(stem, ytid):
    assert youtube_id_of_stem(stem) == ytid


def test_audioset_segments_labels_origins_and_files(clap_data):
    records, rejects = _split(read_audioset(_audioset(clap_data)))
    by_id = {r.source_id: r for r in records}
    assert list(by_id) == [*AS_TRAIN, *LEAK]
    r = by_id["-0RWZT-miFs"]
    assert r.labels == ("Animal", "Dog", "Bark") and r.captions == () and r.keywords == ()
    assert r.split == "unbalanced_train" and r.row == 2 and r.license == "CC-BY-4.0"
    assert r.origin_ids == ("youtube:-0RWZT-miFs",) and r.expected_duration_s == 10.0
    assert str(r.audio).endswith("/-0RWZT-miFs_420.000_430.000.flac")
    assert r.original == {
        "ytid": "-0RWZT-miFs",
        "start_seconds": 420.0,
        "end_seconds": 430.0,
        "positive_labels": ["/m/0jbk", "/m/0bt9lr", "/m/05tny_"],
    }
    assert by_id["--PJHxphWEs"].labels == ("Speech", "Gush")
    assert str(by_id["Yb0RFKhbpFJ"].audio).endswith("/YYb0RFKhbpFJ.wav")
    assert [(j.row, j.code) for j in rejects] == [
        (7, "missing_id"),
        (8, "unknown_label"),
        (9, "bad_timestamps"),
        (10, "broken_quoting"),
        (11, "missing_audio"),
    ]
    assert all(j.stage == "manifest" and j.source == "as" and j.reason for j in rejects)
    assert "/m/zzzzz" in rejects[1].reason and rejects[1].source_id == "unknownLbl1"


def test_audioset_eval_file_gives_eval_split_and_spec_split_wins(clap_data):
    records, _ = _split(read_audioset(_audioset(clap_data, "eval_segments.csv", "eval")))
    assert {r.split for r in records} == {"eval"} and len(records) == 2
    src = replace(_audioset(clap_data, "eval_segments.csv", "eval"), split_map={"eval": "test"})
    assert {r.split for r in _split(read_audioset(src))[0]} == {"test"}


def test_a_refused_split_name_or_audio_path_is_a_reject_with_its_own_code(clap_data):
    eval_src = _audioset(clap_data, "eval_segments.csv", "eval")
    _, rejects = _split(read_audioset(replace(eval_src, split_map={"eval": "../up"})))
    assert [r.code for r in rejects] == ["bad_split", "bad_split"]
    assert "split 'eval'" in rejects[0].reason and rejects[0].source_id
    # a file pattern that climbs out of the audio root: the path rule's code, not bad_split
    _, rejects = _split(
        read_audioset(_audioset(clap_data, "eval_segments.csv", "eval", file_pattern="../{ytid}.flac"))
    )
    assert [r.code for r in rejects] == ["outside_root", "outside_root"]


def test_file_pattern_builds_paths_without_listing(clap_data):
    src = _audioset(clap_data, file_pattern="Y{ytid}_{start}_{end}.wav")
    records, rejects = _split(read_audioset(src))
    # nothing is listed, so the row whose file was never downloaded is a record here (the shard
    # writer rejects it as missing_file, with the same row number)
    assert "noAudio0001" in {r.source_id for r in records}
    r = next(r for r in records if r.source_id == "Yb0RFKhbpFJ")
    assert str(r.audio).endswith("/YYb0RFKhbpFJ_12.500_22.500.wav")
    assert {j.code for j in rejects} == {"missing_id", "unknown_label", "bad_timestamps", "broken_quoting"}


def test_plan_mode_lists_nothing(clap_data, tmp_path):
    src = replace(_audioset(clap_data), audio_root=str(tmp_path / "nowhere"))
    records, _ = _split(read_audioset(src, scan_audio=False))
    assert len(records) == 7  # every well-formed row, audio unchecked


def test_unreadable_class_index_is_one_reject(clap_data, tmp_path):
    bad = tmp_path / "class_labels_indices.csv"
    bad.write_text("not,a,class,index\n1,2,3,4\n")
    items = list(read_audioset(replace(_audioset(clap_data), options={"class_index": str(bad)})))
    assert len(items) == 1 and items[0].code == "unreadable_metadata" and items[0].row is None


def _audiocaps(root, name):
    return SourceSpec(
        name="ac",
        adapter="audiocaps",
        manifest=str(root / "audiocaps" / "dataset" / f"{name}.csv"),
        audio_root=str(root / "audiocaps" / "audio" / name),
    )


def test_audiocaps_clip_rows_become_one_sample(clap_data):
    records, rejects = _split(read_audiocaps(_audiocaps(clap_data, "test")))
    assert [r.source_id for r in records] == [*LEAK, "testClip001"]
    r = records[0]
    assert r.captions == tuple(f"Test caption {i} for clip {LEAK[0]}" for i in range(1, 6))
    assert r.split == "test" and r.origin_ids == (f"youtube:{LEAK[0]}",) and r.row == 1
    assert r.original["audiocap_ids"] == [str(103500 + i) for i in range(5)] and not rejects
    val, _ = _split(read_audiocaps(_audiocaps(clap_data, "val")))
    assert len(val) == 1 and len(val[0].captions) == 5 and val[0].split == "valid"


def test_audiocaps_bad_rows(clap_data):
    records, rejects = _split(read_audiocaps(_audiocaps(clap_data, "train")))
    assert [(r.source_id, len(r.captions), r.split) for r in records] == [
        ("r1nicOVtvkQ", 1, "train"),
        ("UDGBjjwyaqE", 2, "train"),
    ]
    assert str(records[1].audio).endswith("/YUDGBjjwyaqE.flac")
    assert [(j.row, j.code) for j in rejects] == [
        (5, "missing_id"),
        (6, "bad_timestamps"),
        (7, "empty_caption"),
        (4, "missing_audio"),
    ]


def test_audiocaps_conflicting_segment_and_audiocap_id_pattern(tmp_path):
    (tmp_path / "audio").mkdir()
    m = tmp_path / "train.csv"
    m.write_text("audiocap_id,youtube_id,start_time,caption\n1,abcdefghijk,10,one\n2,abcdefghijk,50,two\n")
    src = SourceSpec(
        name="ac",
        adapter="audiocaps",
        manifest=str(m),
        audio_root=str(tmp_path / "audio"),
        options={"file_pattern": "{audiocap_id}.wav"},
    )
    records, rejects = _split(read_audiocaps(src))
    assert [j.code for j in rejects] == ["conflicting_segment"] and rejects[0].row == 2
    assert records[0].audio == LocalFile(str(tmp_path / "audio" / "1.wav")) and records[0].captions == (
        "one",
    )
