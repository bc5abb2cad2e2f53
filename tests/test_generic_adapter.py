import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.layout import NAME_RULES
from clap_corpus.core.records import Record, Reject, make_key
from clap_corpus.manifests.generic import read_generic
from clap_corpus.manifests.source import PathRejected, SourceSpec, resolve_audio_path


def _source(tmp_path, manifest, **kw) -> SourceSpec:
    return SourceSpec(
        name="src", adapter="generic", audio_root=str(tmp_path / "audio"), manifest=str(manifest), **kw
    )


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


@pytest.fixture
def audio_dir(tmp_path):
    d = tmp_path / "audio"
    (d / "sub").mkdir(parents=True)
    for name in ("a.wav", "b.mp3", "sub/c.flac"):
        (d / name).write_bytes(b"x")
    return d


def test_jsonl_rows_become_records(tmp_path, audio_dir):
    m = tmp_path / "m.jsonl"
    rows = [
        {
            "audio": "a.wav",
            "captions": ["A dog barks", "  A dog   barks "],
            "labels": ["Dog"],
            "split": "val",
            "extra": {"x": 1},
        },
        {"audio": "sub/c.flac", "keywords": "wind|rain", "license": "CC-BY-4.0"},
    ]
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    records, rejects = _split(read_generic(_source(tmp_path, m, split_map={"val": "valid"}, license="CC0")))
    assert not rejects
    a, c = records
    assert a.audio == LocalFile(str(audio_dir / "a.wav")) and a.split == "valid" and a.row == 1
    assert a.captions == ("A dog barks",) and a.labels == ("Dog",) and a.original == {"extra": {"x": 1}}
    assert a.license == "CC0" and c.license == "CC-BY-4.0"
    assert c.keywords == ("wind", "rain") and c.split is None and c.source_id == "sub/c.flac"
    assert NAME_RULES["key"].match(a.key) and a.key != c.key


def test_csv_with_json_lists_bom_and_renamed_columns(tmp_path, audio_dir):
    m = tmp_path / "m.csv"
    m.write_text(
        '\ufefffile,caps,id\nb.mp3,"[""A bell rings""]",bell-1\n,"[""no path""]",x\n', encoding="utf-8"
    )
    src = _source(tmp_path, m, options={"columns": {"audio": "file", "captions": "caps"}})
    records, rejects = _split(read_generic(src))
    assert [r.captions for r in records] == [("A bell rings",)] and records[0].source_id == "bell-1"
    assert [(r.code, r.row) for r in rejects] == [("missing_path", 2)]


def test_parquet_manifest(tmp_path, audio_dir):
    m = tmp_path / "m.parquet"
    pq.write_table(pa.table({"audio": ["a.wav", "b.mp3"], "captions": [["one"], ["two", "three"]]}), m)
    records, rejects = _split(read_generic(_source(tmp_path, m)))
    assert [r.captions for r in records] == [("one",), ("two", "three")] and not rejects


def test_bad_rows_go_to_rejects_with_reasons(tmp_path, audio_dir):
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"x")
    os.symlink(outside, audio_dir / "link.wav")
    m = tmp_path / "m.jsonl"
    m.write_text(
        "\n".join(
            [
                json.dumps({"audio": "a.wav", "captions": [42]}),
                "{not json",
                json.dumps(["a list"]),
                json.dumps({"audio": "../secret.wav", "captions": ["x"]}),
                json.dumps({"audio": str(outside), "captions": ["x"]}),
                json.dumps({"audio": "link.wav", "captions": ["x"]}),
                json.dumps({"audio": "gs://bucket/a.wav", "captions": ["x"]}),
                json.dumps({"audio": "b.mp3", "captions": ["fine"]}),
            ]
        )
        + "\n"
    )
    records, rejects = _split(read_generic(_source(tmp_path, m)))
    assert [r.source_id for r in records] == ["b.mp3"]
    assert [(r.row, r.code) for r in rejects] == [
        (1, "caption_not_text"),
        (2, "malformed_row"),
        (3, "malformed_row"),
        (4, "outside_root"),
        (5, "outside_root"),
        (6, "outside_root"),
        (7, "scheme_not_allowed"),
    ]
    assert all(r.reason and r.stage == "manifest" and r.source == "src" for r in rejects)


def test_url_roots_and_allowed_schemes():
    src = SourceSpec(name="s", adapter="generic", audio_root="gs://bucket/audio", allowed_schemes=("s3",))
    assert resolve_audio_path(src, "x/y.flac") == "gs://bucket/audio/x/y.flac"
    assert resolve_audio_path(src, "s3://other/z.wav") == "s3://other/z.wav"
    for bad in ("../up.wav", "gs://bucket/elsewhere/a.wav", "/etc/passwd", "http://evil/a.wav"):
        with pytest.raises(PathRejected):
            resolve_audio_path(src, bad)


def test_keys_are_safe_and_unique():
    keys = {
        make_key("src", sid) for sid in ("a.b/c", "a-b-c", "A B C", "../../etc/passwd", "x" * 500, "日本語")
    }
    assert len(keys) == 6
    assert all(NAME_RULES["key"].match(k) and "." not in k and len(k) <= 80 for k in keys)
