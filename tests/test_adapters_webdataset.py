"""The `webdataset` adapter: LAION-style tars, hostile tars, and this project's own shards read back."""

import io
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import webdataset as wds
import yaml
from helpers.audio import tone_bytes

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.manifests.webdataset import expand_braces, read_webdataset
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.transforms.audio_source import read_audio_bytes


def _add(t: tarfile.TarFile, name: str, data: bytes, **kw) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    t.addfile(info, io.BytesIO(data))


def _laion_doc(caption: str, tags: list[str], **original) -> bytes:
    return json.dumps({"text": [caption], "tag": tags, "original_data": original}).encode()


def _laion_tar(path: Path, first: int, freqs: list[float]) -> None:
    """A tar as LAION's CLAP_freesound shards are: <n>.flac + <n>.json, written by webdataset itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as w:
        for i, f in enumerate(freqs):
            n = first + i
            w.write(
                {
                    "__key__": str(n),
                    "flac": tone_bytes(f),
                    "json": _laion_doc(
                        f"A tone at {int(f)} hertz",
                        ["sine", "test"],
                        id=1000 + n,
                        download_link=f"https://freesound.org/people/someone/sounds/{1000 + n}/",
                        license="http://creativecommons.org/publicdomain/zero/1.0/",
                    ),
                }
            )


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def test_brace_patterns():
    assert expand_braces("train/{000000..000002}.tar") == [f"train/00000{i}.tar" for i in range(3)]
    assert expand_braces("{a,b}/{8..10}.tar") == [
        "a/8.tar",
        "a/9.tar",
        "a/10.tar",
        "b/8.tar",
        "b/9.tar",
        "b/10.tar",
    ]


def test_laion_tars_read_with_no_options(tmp_path):
    root = tmp_path / "freesound"
    _laion_tar(root / "train" / "0.tar", 0, [330.0, 440.0])
    _laion_tar(root / "test" / "0.tar", 2, [550.0])
    records, rejects = _split(
        read_webdataset(SourceSpec(name="fs", adapter="webdataset", audio_root=str(root)))
    )
    assert not rejects
    assert [(r.source_id, r.split, r.captions, r.keywords, r.origin_ids) for r in records] == [
        ("test/0/2", "test", ("A tone at 550 hertz",), ("sine", "test"), ("freesound:1002",)),
        ("train/0/0", "train", ("A tone at 330 hertz",), ("sine", "test"), ("freesound:1000",)),
        ("train/0/1", "train", ("A tone at 440 hertz",), ("sine", "test"), ("freesound:1001",)),
    ]
    first = records[1]
    assert isinstance(first.audio, ArchiveMember) and first.audio.member == "0.flac"
    assert first.audio.offset == 0  # an uncompressed tar: read by one seek
    assert first.original["id"] == 1000 and first.original["webdataset_key"] == "0"
    assert read_audio_bytes(records[2].audio) == tone_bytes(440.0)
    # A brace pattern picks tars; a label role and a compressed tar read the same way.
    gz = root / "gz" / "000000.tar.gz"
    gz.parent.mkdir()
    with tarfile.open(gz, "w:gz") as t:
        _add(t, "k.wav", tone_bytes(660.0, fmt="wav"))
        _add(t, "k.json", json.dumps({"text": "Gz tone", "tag": ["Dog"]}).encode())
    spec = SourceSpec(
        name="fs",
        adapter="webdataset",
        audio_root=str(root),
        options={"pattern": ["train/{0..0}.tar", "gz/*.tar.gz"], "tag_role": "labels"},
    )
    records, rejects = _split(read_webdataset(spec))
    assert not rejects
    assert [(r.source_id, r.labels) for r in records] == [
        ("gz/000000/k", ("Dog",)),
        *[(f"train/0/{i}", ("sine", "test")) for i in (0, 1)],
    ]
    assert records[0].audio.offset is None and read_audio_bytes(records[0].audio) == tone_bytes(
        660.0, fmt="wav"
    )


def _hostile_tar(path: Path) -> None:
    with tarfile.open(path, "w") as t:
        _add(t, "good.flac", tone_bytes(330.0))
        _add(t, "good.json", _laion_doc("Good", ["a"]))
        _add(t, "../escape.flac", tone_bytes(440.0))
        _add(t, "link.flac", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(t, "link.json", _laion_doc("Link", []))
        _add(t, "list.flac", tone_bytes(550.0))
        _add(t, "list.json", b'["not", "an", "object"]')
        _add(t, "broken.flac", tone_bytes(560.0))
        _add(t, "broken.json", b"{not json")
        _add(t, "noaudio.json", _laion_doc("No audio", []))
        _add(t, "noaudio.txt", b"hello")
        _add(t, "big.flac", tone_bytes(660.0, seconds=4.0))
        _add(t, "big.json", _laion_doc("Big", []))
        _add(t, "last.flac", tone_bytes(770.0))
        _add(t, "last.json", _laion_doc("Last", []))


def test_hostile_members_become_rejects(tmp_path):
    root = tmp_path / "tars"
    root.mkdir()
    _hostile_tar(root / "a.tar")
    whole = (root / "a.tar").read_bytes()
    # The same tar cut inside its last sample's audio: the last sample is refused, the rest kept.
    last = whole.index(b"last.flac")
    (root / "b.tar").write_bytes(whole[: last + 512 + 100])
    (root / "c.tar").write_bytes(b"this is not a tar at all" * 40)
    records, rejects = _split(
        read_webdataset(SourceSpec(name="h", adapter="webdataset", audio_root=str(root)))
    )
    got = sorted((r.source_id or "-", r.code) for r in rejects)
    bad_a = [
        ("a/../escape", "bad_member"),
        ("a/broken", "malformed_row"),
        ("a/link", "bad_member"),
        ("a/list", "malformed_row"),
        ("a/noaudio", "missing_audio"),
    ]
    assert got == sorted(
        [
            *bad_a,
            *[("b" + s[1:], c) for s, c in bad_a],
            ("b/last", "truncated_archive"),
            ("-", "unreadable_metadata"),
        ]
    )
    assert sorted(r.source_id for r in records) == ["a/big", "a/good", "a/last", "b/big", "b/good"]
    # Every sample counted once: 8 in a, 8 in b (the cut one a reject), one for the tar that is none.
    assert len(records) + len(rejects) == 8 + 8 + 1


def test_end_to_end_then_our_own_shards_read_back(tmp_path):
    """LAION-style tars -> a corpus (a member over max_file_bytes is refused while its shard is built);
    then that corpus's own tars are a source of a second corpus, captions, tags and origin ids intact."""
    raw = tmp_path / "raw"
    _laion_tar(raw / "train" / "0.tar", 0, [330.0, 440.0, 550.0])
    with tarfile.open(raw / "train" / "1.tar", "w") as t:
        _add(t, "big.flac", tone_bytes(660.0, seconds=3.0))  # over the cap set below
        _add(t, "big.json", _laion_doc("Too big", ["x"]))
        _add(t, "yt.flac", tone_bytes(880.0))
        _add(t, "yt.json", _laion_doc("A youtube tone", ["beep"], youtube_id="0123456789A"))
    # A held-out set whose JSON names the Freesound id of the third train clip: the leakage guard
    # finds it through the origin ids the adapter read from both JSON documents.
    with tarfile.open(tmp_path / "held.tar", "w") as t:
        _add(t, "h.flac", tone_bytes(990.0))
        _add(t, "h.json", _laion_doc("A held-out tone", ["held"], freesound_id="1002"))
    cap = len(tone_bytes(660.0, seconds=3.0)) - 1
    assert all(len(tone_bytes(f)) <= cap for f in (330.0, 880.0))
    spec = {
        "corpus": "wdsdemo",
        "options": {"shard_size": 8, "store_mel": False, "max_file_bytes": cap},
        "sources": [
            {"name": "laion", "adapter": "webdataset", "audio_root": str(raw)},
            {
                "name": "held",
                "adapter": "webdataset",
                "audio_root": str(tmp_path),
                "split": "test",
                "options": {"pattern": "held.tar"},
            },
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    s = run_corpus(str(tmp_path / "spec.yaml"), str(out), ["--runner=FnApiRunner"])
    assert s["accounting_ok"]
    assert (s["sources"]["laion"]["inputs"], s["sources"]["laion"]["samples"]) == (5, 3)
    assert s["sources"]["held"]["samples"] == 1
    rejects = [json.loads(x) for p in (out / "rejects").rglob("*.jsonl") for x in p.read_text().splitlines()]
    assert sorted((r["source_id"], r["code"]) for r in rejects) == [
        ("train/0/2", "eval_overlap"),
        ("train/1/big", "too_large"),
    ]

    again = {
        "corpus": "readback",
        "options": {"shard_size": 8, "store_mel": False},
        "sources": [
            {"name": "ours", "adapter": "webdataset", "audio_root": str(out / "webdataset" / "wdsdemo")}
        ],
    }
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(again))
    out2 = tmp_path / "out2"
    s2 = run_corpus(str(tmp_path / "again.yaml"), str(out2), ["--runner=FnApiRunner"])
    assert s2["accounting_ok"] and s2["sources"]["ours"]["samples"] == 4
    docs = {}
    for tar in (out2 / "webdataset" / "readback").rglob("*.tar"):
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            doc = json.loads(sample["json"])
            docs[doc["text"][0]] = doc
    assert sorted(docs) == ["A held-out tone", "A tone at 330 hertz", "A tone at 440 hertz", "A youtube tone"]
    yt = docs["A youtube tone"]
    assert (yt["split"], yt["keywords"], yt["origin_ids"]) == ("train", ["beep"], ["youtube:0123456789A"])
    assert docs["A tone at 330 hertz"]["origin_ids"] == ["freesound:1000"]
    held = docs["A held-out tone"]  # the split comes back from the document, the ids too
    assert (held["split"], held["origin_ids"]) == ("test", ["freesound:1002"])
    # each clip keeps its id (and its source's name), not the read-back tar's train/000000/<key>
    assert (yt["source_id"], held["source_id"]) == ("laion/train/1/yt", "held/held/h")


def test_laion_freesound_layout_ids_splits_and_the_wanted_list(tmp_path):
    """Meranti/CLAP_freesound as downloaded: freesound_no_overlap/{train_1,train_2,test}/N.tar, the
    Freesound id only in original_data (id, download_url /apiv2/sounds/<id>/download/)."""
    from fixtures_sources import FS_LAION, build_hub_copies

    from clap_corpus.manifests.registry import read_source

    hub, _ = build_hub_copies(tmp_path)
    root = str(hub / "CLAP_freesound")
    src = SourceSpec(name="fs", adapter="webdataset", audio_root=root)
    records, rejects = _split(read_webdataset(src))
    assert not rejects
    got = {r.origin_ids: r.split for r in records}
    expected = {
        (f"freesound:{i}",): "test" if folder == "test" else "train"
        for folder, ids in FS_LAION.items()
        for i in ids
    }
    assert got == expected
    # the leakage guard's ids also when the JSON has only the API's download URL
    doc = {
        "text": ["x"],
        "original_data": {"download_url": "https://freesound.org/apiv2/sounds/42/download/"},
    }
    tar = tmp_path / "one" / "0.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w") as t:
        _add(t, "a.flac", tone_bytes(330.0))
        _add(t, "a.json", json.dumps(doc).encode())
    (one,) = _split(read_webdataset(SourceSpec(name="x", adapter="webdataset", audio_root=str(tar.parent))))[
        0
    ]
    assert one.origin_ids == ("freesound:42",)
    # split_map maps a folder by its own name; an entry no clip uses is counted, not silently accepted
    from clap_corpus.manifests.notes import SourceNotes

    notes = SourceNotes()
    mapped = replace(src, split_map={"train_2": "valid", "train_9": "train"})
    records = [r for r in read_source(mapped, notes=notes) if isinstance(r, Record)]
    assert {r.split for r in records} == {"train", "valid", "test"}
    found = notes.to_json(mapped.split_map, mapped.split)
    assert found["split_map_unused"] == ["train_9"]
    assert found["native_splits"] == {"test": 1, "train": 3, "train_2": 2}
    # the official list of Freesound ids meets the tars' clips
    (tmp_path / "ids.csv").write_text("freesound_id,title\n282776,a\n158824,b\n999999,gone\n")
    held = replace(src, options={"wanted": {"files": [str(tmp_path / "ids.csv")], "origin": "freesound"}})
    notes = SourceNotes()
    items = list(read_source(held, notes=notes))
    assert sum(isinstance(i, Record) for i in items) == 2
    assert (notes.wanted, notes.obtained, notes.missing, notes.not_listed) == (3, 2, 1, 4)


def test_origin_fields_add_to_the_defaults(tmp_path):
    root = tmp_path / "tars"
    root.mkdir()
    doc = {"text": ["x"], "original_data": {"youtube_id": "0123456789A", "clip": "77"}}
    with tarfile.open(root / "0.tar", "w") as t:
        _add(t, "a.flac", tone_bytes(330.0))
        _add(t, "a.json", json.dumps(doc).encode())

    def origins(**options):
        spec = SourceSpec(name="x", adapter="webdataset", audio_root=str(root), options=options)
        return _split(read_webdataset(spec))[0][0].origin_ids

    assert origins() == ("youtube:0123456789A",)
    # a field of one's own is added; the YouTube default stays
    assert origins(origin_fields={"original_data.clip": "bbc"}) == ("youtube:0123456789A", "bbc:77")
    # "" removes a default
    assert origins(origin_fields={"original_data.youtube_id": ""}) == ()


def test_a_split_map_entry_no_clip_uses_is_said_by_plan_and_run(tmp_path):
    from fixtures_sources import build_hub_copies

    from clap_corpus.manifests.plan import format_plan, plan_spec
    from clap_corpus.pipeline.launch.run import format_report
    from clap_corpus.pipeline.outputs.summary_model import RunSummary
    from clap_corpus.pipeline.spec.corpus import load_spec

    hub, _ = build_hub_copies(tmp_path)
    doc = {
        "corpus": "sm",
        "options": {"shard_size": 8, "store_mel": False},
        "sources": [
            {
                "name": "fs",
                "adapter": "webdataset",
                "audio_root": str(hub / "CLAP_freesound"),
                "split_map": {"train1": "train"},  # a typo for train_1
                "options": {"pattern": "freesound_no_overlap/*/*.tar"},
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    plan = plan_spec(load_spec(str(tmp_path / "spec.yaml")))
    s = run_corpus(str(tmp_path / "spec.yaml"), str(tmp_path / "out"), ["--runner=FnApiRunner"])
    line = "fs: split_map 'train1' matched no clip (native splits: test 1, train 5)"
    assert line in format_plan(plan) and line in format_report(RunSummary.from_json(s))
    assert s["sources"]["fs"]["split_map_unused"] == plan["sources"]["fs"]["split_map_unused"] == ["train1"]
    assert s["sources"]["fs"]["native_splits"] == {"test": 1, "train": 5}
