"""WavCaps as distributed: FLAC inside zip archives plus its JSON metadata, read without extracting."""

import json
import zipfile
from pathlib import Path

import yaml
from helpers.audio import tone_bytes

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.captionfiles import read_captionfiles
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.transforms.audio_source import read_audio_bytes


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


BOMB_BYTES = 4 * 1024 * 1024  # zeros: a few kilobytes once deflated


def _wavcaps(root: Path) -> Path:
    """WavCaps' FreeSound subset: json_files/FreeSound/fsd_final.json + Zip_files/FreeSound/*.zip."""
    zips = root / "Zip_files" / "FreeSound"
    zips.mkdir(parents=True)
    with zipfile.ZipFile(zips / "FreeSound.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("FreeSound_flac/180913.flac", tone_bytes(330.0))
        z.writestr("FreeSound_flac/180914.flac", tone_bytes(440.0))
        z.writestr("FreeSound_flac/666.flac", b"\0" * BOMB_BYTES)
        z.writestr("../evil/777.flac", tone_bytes(550.0))  # named outside the archive: never indexed
    entry = lambda i, cap, **kw: {"id": i, "caption": cap, "duration": 1.0, **kw}  # noqa: E731
    meta = root / "json_files" / "FreeSound" / "fsd_final.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(
        json.dumps(
            {
                "num_captions_per_audio": 1,
                "data": [
                    entry(
                        "180913", "A low tone hums.", file_name="UK Mello.wav", author="someone", tags=["hum"]
                    ),
                    entry("180914", "A higher tone rings.", file_name="Ring.wav", author="other"),
                    entry("666", "Inflates past the cap."),
                    entry("777", "Lives outside the archive."),
                    entry("888", "Not in any archive."),
                    ["not", "an", "object"],
                    {"caption": "no id"},
                ],
            }
        )
    )
    return meta


def test_wavcaps_json_with_audio_in_zips(tmp_path):
    meta = _wavcaps(tmp_path)
    src = SourceSpec(
        name="wavcaps_fs",
        adapter="captionfiles",
        manifest=str(meta),
        audio_root=str(tmp_path),
        options={
            "archives": [str(tmp_path / "Zip_files" / "FreeSound" / "FreeSound.zip")],
            "origin": "freesound",
        },
    )
    records, rejects = _split(read_captionfiles(src))
    assert [(r.source_id, r.captions, r.keywords, r.attribution, r.origin_ids) for r in records] == [
        ("180913", ("A low tone hums.",), ("hum",), "someone", ("freesound:180913",)),
        ("180914", ("A higher tone rings.",), (), "other", ("freesound:180914",)),
        ("666", ("Inflates past the cap.",), (), None, ("freesound:666",)),
    ]
    audio = records[0].audio
    assert isinstance(audio, ArchiveMember) and audio.offset is not None  # one seek to read it later
    assert (audio.archive, audio.member) == (src.options["archives"][0], "FreeSound_flac/180913.flac")
    assert records[0].original["file_name"] == "UK Mello.wav"
    assert read_audio_bytes(records[1].audio) == tone_bytes(440.0)
    assert sorted((r.row, r.code) for r in rejects) == [
        (4, "missing_audio"),
        (5, "missing_audio"),
        (6, "malformed_row"),
        (7, "missing_id"),
    ]


def test_wavcaps_end_to_end_zip_bomb_is_a_reject(tmp_path):
    meta = _wavcaps(tmp_path)
    spec = {
        "corpus": "wavcaps",
        "options": {"shard_size": 8, "store_mel": False, "max_file_bytes": 1024 * 1024},
        "sources": [
            {
                "name": "wavcaps_fs",
                "adapter": "captionfiles",
                "manifest": str(meta.relative_to(tmp_path)),
                "audio_root": ".",
                "split": "train",
                "options": {"archives": "Zip_files/FreeSound/*.zip", "origin": "freesound"},
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    s = run_corpus(str(tmp_path / "spec.yaml"), str(out), ["--runner=FnApiRunner"])
    assert s["accounting_ok"]
    src = s["sources"]["wavcaps_fs"]
    assert (src["inputs"], src["samples"], src["rejects"]) == (7, 2, 5)
    shard_rejects = [
        json.loads(x)
        for p in (out / "rejects" / "shards").rglob("*.jsonl")
        for x in p.read_text().splitlines()
    ]
    assert [(r["source_id"], r["code"]) for r in shard_rejects] == [("666", "too_large")]
    assert not list(tmp_path.rglob("777.flac")) and not (tmp_path.parent / "evil").exists()
