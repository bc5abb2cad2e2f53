"""Nothing a manifest says can make a run write outside ``--output``.

Every value that becomes part of an output path (corpus, source and split names, sample keys, shard
names) passes one check (``core.layout.check_name``): adapters' records go through
``manifests.registry.read_source``, which turns an unusable value into a reject, and ``Layout`` refuses
to build a path from one at all.
"""

import json
import os
from pathlib import Path

import pytest

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.layout import Layout, UnsafeName, check_name
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.registry import ADAPTERS, AdapterInfo, read_source
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import SpecError, parse_spec

HOSTILE_SPLITS = [
    "../../../escaped",
    "train/../../x",
    "..",
    "/tmp/abs",
    "train/sub",
    "train\\..\\..\\x",
    "tr\x00ain",
    "Train",  # split folders are lowercase: `Train` and `train` would be one folder on some disks
    "a" * 41,
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_hostile_split_values_in_a_generic_manifest_never_write_outside_output(tmp_path):
    src = tmp_path / "src"
    (src / "audio").mkdir(parents=True)
    wav = synth.encode_audio(synth.tone(440.0, 1.0, 16_000), 16_000, "wav")
    rows = []
    for i, split in enumerate([*HOSTILE_SPLITS, "train"]):
        (src / "audio" / f"c{i}.wav").write_bytes(wav)
        rows.append({"audio": f"c{i}.wav", "captions": [f"clip {i}"], "split": split})
    (src / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = parse_spec(
        {
            "corpus": "confined",
            "options": {"shard_size": 4},
            "sources": [{"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "audio"}],
        },
        str(src / "spec.yaml"),
    )
    # The output sits deep inside the scratch folder so that '../../..' from any split folder lands in
    # the scratch folder, where the test can see it.
    out = tmp_path / "a" / "b" / "c" / "out"
    before = _tree(tmp_path)
    summary = run_corpus(spec, str(out), ["--runner=FnApiRunner"])
    created = {p for p in _tree(tmp_path) - before if not p.startswith("a/b/c/out")}
    assert created == {"a", "a/b", "a/b/c"}, created
    assert not os.path.exists("/tmp/abs")

    assert summary["accounting_ok"]
    assert summary["samples"] == 1 and summary["rejects"] == len(HOSTILE_SPLITS)
    assert summary["rejects_by_code"] == {"bad_split": len(HOSTILE_SPLITS)}
    rejects = [json.loads(x) for x in (out / "rejects" / "manifest" / "s.jsonl").read_text().splitlines()]
    assert sorted(r["row"] for r in rejects) == list(range(1, len(HOSTILE_SPLITS) + 1))
    assert {r["stage"] for r in rejects} == {"manifest"}
    assert sorted(os.listdir(out / "webdataset" / "confined")) == ["train"]


def _toy_adapter(records):
    def read(source, scan_audio):
        yield from records

    return read


def test_a_new_adapter_cannot_skip_the_check(monkeypatch, tmp_path):
    """An adapter that builds records by hand, without the shared helpers, still gets its unusable
    splits and keys turned into rejects: the check sits in the one place every record passes."""
    good = Record(key="toy_a_0123456789", source="toy", source_id="a", audio=LocalFile("/x/a.wav"), row=1)
    bad = [
        Record(
            key="toy_b_0123456789",
            source="toy",
            source_id="b",
            audio=LocalFile("/x/b.wav"),
            row=2,
            split="../up",
        ),
        Record(key="../../evil", source="toy", source_id="c", audio=LocalFile("/x/c.wav"), row=3),
        Record(key="Toy.C", source="toy", source_id="d", audio=LocalFile("/x/d.wav"), row=4),
        Record(key="toy_e_0123456789", source="other", source_id="e", audio=LocalFile("/x/e.wav"), row=5),
    ]
    toy = AdapterInfo(
        "toy", _toy_adapter([good, *bad]), AdapterOptions, 10.0, "hand-written", needs_manifest=False
    )
    monkeypatch.setitem(ADAPTERS, "toy", toy)
    source = SourceSpec(name="toy", adapter="toy", audio_root=str(tmp_path))
    out = list(read_source(source))
    assert out[0] == good
    rejects = out[1:]
    assert all(isinstance(r, Reject) for r in rejects)
    assert [(r.row, r.code, r.stage) for r in rejects] == [
        (2, "bad_split", "manifest"),
        (3, "bad_key", "manifest"),
        (4, "bad_key", "manifest"),
        (5, "bad_source", "manifest"),
    ]
    assert "'../up'" in rejects[0].reason


@pytest.mark.parametrize("kind", ["corpus", "split", "source", "shard", "key"])
@pytest.mark.parametrize("value", ["..", "../x", "a/b", "", "/abs", "a\\b", "x\x00", ".hidden", "a b"])
def test_layout_refuses_unsafe_path_components(kind, value):
    with pytest.raises(UnsafeName):
        check_name(kind, value)


def test_layout_checks_every_component_it_joins(tmp_path):
    layout = Layout(str(tmp_path), "Clotho")
    assert layout.tar_path("train", "000001").endswith("webdataset/Clotho/train/000001.tar")
    with pytest.raises(UnsafeName):
        layout.tar_path("../x", "000001")
    with pytest.raises(UnsafeName):
        layout.parquet_path("train", "../../000001")
    with pytest.raises(UnsafeName):
        layout.manifest_rejects_path("../s")
    with pytest.raises(UnsafeName):
        Layout(str(tmp_path), "../corpus")


@pytest.mark.parametrize("name", ["Clotho", "FSD50K", "audiocaps", "BBCSoundEffects", "audioset_balanced"])
def test_corpus_may_be_named_as_laion_clap_names_its_datasets(tmp_path, name):
    spec = parse_spec(
        {"corpus": name, "sources": [{"name": "s", "adapter": "filenames", "audio_root": "a"}]},
        str(tmp_path / "spec.yaml"),
    )
    assert spec.corpus == name


@pytest.mark.parametrize("name", ["../x", "a/b", "x.y", "-x", "a" * 41, "CON "])
def test_unsafe_corpus_names_fail_the_spec(tmp_path, name):
    with pytest.raises(SpecError, match=r"spec.yaml: spec.corpus"):
        parse_spec(
            {"corpus": name, "sources": [{"name": "s", "adapter": "filenames", "audio_root": "a"}]},
            str(tmp_path / "spec.yaml"),
        )
