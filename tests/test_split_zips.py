"""Zips split in parts as WavCaps ships them (Info-ZIP's `zip -s`), read in place as one archive.

The committed archive (tests/data/wavcaps/, made by tests/data/make_wavcaps_split.py with Info-ZIP 3.0)
is what every test here reads, so none needs `zip`; where Info-ZIP is installed, one test also makes
archives of more parts, with and without Zip64 records, and joins one with `zip -s 0`. The reader's own
module is imported by the tests that call it, so that the others also run on code without it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from fixtures_sources import SPLIT_ZIP
from test_cloud_paths import MemFileSystem

from clap_corpus.core.audio_ref import ArchiveMember
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.archives import archive_members
from clap_corpus.manifests.plan import plan_spec
from clap_corpus.manifests.registry import read_source
from clap_corpus.pipeline.launch.preflight import check_spec
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import SpecError, load_spec
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_audio_bytes

PARTS = SPLIT_ZIP / "Zip_files" / "FreeSound"
DIGESTS: dict[str, str] = json.loads((SPLIT_ZIP / "members.json").read_text())
RUNNER = ["--runner=FnApiRunner"]


def _wavcaps(root: Path) -> Path:
    """WavCaps' FreeSound subset: the split zip in Zip_files/FreeSound, its JSON in json_files/."""
    zips = root / "Zip_files" / "FreeSound"
    zips.mkdir(parents=True)
    for part in PARTS.iterdir():
        shutil.copyfile(part, zips / part.name)
    ids = [name.rsplit("/", 1)[1].split(".")[0] for name in DIGESTS]
    meta = root / "json_files" / "FreeSound" / "fsd_final.json"
    meta.parent.mkdir(parents=True)
    data = [{"id": i, "caption": f"Tone {i}.", "duration": 1.0} for i in ids]
    meta.write_text(json.dumps({"num_captions_per_audio": 1, "data": data}))
    return root


def _spec(root: Path, archives: str = "Zip_files/FreeSound/*.zip", **options) -> Path:
    doc = {
        "corpus": "wavcaps",
        "options": {"shard_size": 8, "store_mel": False},
        "sources": [
            {
                "name": "wavcaps_fs",
                "adapter": "captionfiles",
                "manifest": "json_files/FreeSound/fsd_final.json",
                "audio_root": ".",
                "split": "train",
                "options": {"archives": archives, "origin": "freesound", **options},
            }
        ],
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(doc))
    return root / "spec.yaml"


def test_the_committed_archive_is_split_as_wavcaps_ships_it():
    """Two parts, Zip64 records (Python's zipfile refuses it), one member running across the parts."""
    from clap_corpus.transforms import zip_reader

    assert sorted(p.name for p in PARTS.iterdir()) == ["FreeSound.z01", "FreeSound.zip"]
    with pytest.raises(zipfile.BadZipFile, match="span multiple disks"):
        zipfile.ZipFile(PARTS / "FreeSound.zip")
    lay = zip_reader.layout(str(PARTS / "FreeSound.zip"))
    assert lay.split and [Path(p).name for p in lay.parts] == ["FreeSound.z01", "FreeSound.zip"]
    members = [m for m in zip_reader.members(lay) if not m.is_dir]
    boundary = lay.sizes[0]
    assert [m.name for m in members if m.offset < boundary < m.offset + m.compressed_size] == [
        "FreeSound_flac/180921.flac"
    ]
    assert {m.name for m in members if m.offset >= boundary} == {
        "FreeSound_flac/180922.flac",
        "FreeSound_flac/180923.flac",
    }
    # every member read back byte for byte, by offset (one seek) and by name (the central directory)
    archive = str(PARTS / "FreeSound.zip")
    for m in members:
        data = zip_reader.read_member(archive, m.name, m.offset)
        assert hashlib.sha256(data).hexdigest() == DIGESTS[m.name]
        assert zip_reader.read_member(archive, m.name) == data


def test_split_archive_end_to_end_plan_start_check_and_run_agree(tmp_path):
    root = _wavcaps(tmp_path)
    spec = load_spec(str(_spec(root)))
    records = [r for r in read_source(spec.sources[0]) if isinstance(r, Record)]
    assert len(records) == 11 and all(isinstance(r.audio, ArchiveMember) for r in records)
    checks = check_spec(spec)
    assert (checks["wavcaps_fs"].found, checks["wavcaps_fs"].not_found) == (11, 0)
    plan = plan_spec(spec)
    assert plan["sources"]["wavcaps_fs"]["records"] == 11
    s = run_corpus(spec, str(tmp_path / "out"), RUNNER)
    assert s["accounting_ok"]
    assert (s["sources"]["wavcaps_fs"]["samples"], s["rejects"]) == (11, 0)  # none lost to read_error


def test_a_missing_part_is_named(tmp_path):
    root = _wavcaps(tmp_path)
    (root / "Zip_files" / "FreeSound" / "FreeSound.z01").unlink()
    spec = load_spec(str(_spec(root)))
    items = list(read_source(spec.sources[0]))
    (reject,) = [i for i in items if isinstance(i, Reject)]
    assert reject.code == "unreadable_metadata"
    assert "split in 2 parts; missing: FreeSound.z01" in reject.reason


def test_head_and_joined_copy_or_a_part_are_refused_at_spec_load(tmp_path):
    from clap_corpus.transforms import zip_reader

    root = _wavcaps(tmp_path)
    zips = root / "Zip_files" / "FreeSound"
    # what `zip -s 0 FreeSound.zip --out FreeSound_full.zip` leaves: the same members in one file
    with zipfile.ZipFile(zips / "FreeSound_full.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for name in DIGESTS:
            z.writestr(name, zip_reader.read_member(str(zips / "FreeSound.zip"), name))
    with pytest.raises(SpecError) as e:
        load_spec(str(_spec(root)))
    message = str(e.value)
    assert "FreeSound.zip and FreeSound_full.zip hold the same 11 audio members" in message
    assert "FreeSound.zip is split in parts and the other looks like a copy joined from it" in message
    # naming either one reads the same audio
    for name in ("FreeSound.zip", "FreeSound_full.zip"):
        spec = load_spec(str(_spec(root, f"Zip_files/FreeSound/{name}")))
        got = {
            r.source_id: hashlib.sha256(read_audio_bytes(r.audio)).hexdigest()
            for r in read_source(spec.sources[0])
            if isinstance(r, Record)
        }
        assert got == {k.rsplit("/", 1)[1].split(".")[0]: v for k, v in DIGESTS.items()}
    (zips / "FreeSound_full.zip").unlink()
    with pytest.raises(SpecError, match=r"FreeSound.z01 is a part of the split archive FreeSound.zip"):
        load_spec(str(_spec(root, "Zip_files/FreeSound/FreeSound.z*")))


def test_split_archive_through_a_beam_filesystem(tmp_path):
    """The parts on an object store (memfs://, a real Beam FileSystem): listed and read in place."""
    MemFileSystem.reset()
    try:
        bucket = "memfs://bucket/WavCaps/Zip_files/FreeSound"
        for part in PARTS.iterdir():
            storage.write_bytes_atomic(f"{bucket}/{part.name}", part.read_bytes())
        members = archive_members(f"{bucket}/FreeSound.zip")
        assert len(members) == 11
        for m in members:
            assert hashlib.sha256(read_audio_bytes(m)).hexdigest() == DIGESTS[m.member]
        # a run whose archives and audio root are on the store
        root = _wavcaps(tmp_path)
        spec = _spec(root, f"{bucket}/FreeSound.zip")
        doc = yaml.safe_load(spec.read_text())
        doc["sources"][0]["audio_root"] = "memfs://bucket/WavCaps"
        spec.write_text(yaml.safe_dump(doc))
        s = run_corpus(str(spec), str(tmp_path / "out"), RUNNER)
        assert s["accounting_ok"] and s["sources"]["wavcaps_fs"]["samples"] == 11
    finally:
        MemFileSystem.reset()


def test_zip_variants_python_writes(tmp_path):
    """Stored, deflated, bzip2, data descriptors (a zip written to a pipe): the reader agrees with zipfile."""
    from clap_corpus.transforms import zip_reader

    data = {f"d/{i}.flac": os.urandom(3000) + bytes(5000) for i in range(3)}
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2):
        path = tmp_path / f"{method}.zip"
        with zipfile.ZipFile(path, "w", method) as z:
            for name, blob in data.items():
                z.writestr(name, blob)
        got = {m.member: read_audio_bytes(m) for m in archive_members(str(path))}
        assert got == data and not zip_reader.layout(str(path)).split

    class Pipe:  # not seekable: zipfile writes the sizes after the data (flag bit 3)
        def __init__(self):
            self.buf = bytearray()

        def write(self, b):
            self.buf += b
            return len(b)

        def flush(self):
            pass

    pipe = Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_DEFLATED) as z:  # type: ignore[arg-type]
        for name, blob in data.items():
            z.writestr(name, blob)
    (tmp_path / "piped.zip").write_bytes(bytes(pipe.buf))
    members = archive_members(str(tmp_path / "piped.zip"))
    assert {m.member: read_audio_bytes(m) for m in members} == data
    with pytest.raises(storage.FileTooLarge):
        read_audio_bytes(members[0], max_bytes=100)


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP's zip (apt-get install zip)")
@pytest.mark.parametrize("zip64", [False, True])
def test_info_zip_archives_of_many_parts(tmp_path, zip64):
    """Four parts of 64 KiB (the smallest Info-ZIP makes), members across every boundary; then the
    copy `zip -s 0` joins from them reads the same."""
    from clap_corpus.transforms import zip_reader

    folder = tmp_path / "FreeSound_flac"
    folder.mkdir()
    data = {f"FreeSound_flac/{i}.flac": os.urandom(40_000) for i in range(5)}  # incompressible
    for name, blob in data.items():
        (tmp_path / name).write_bytes(blob)
    flags = ["-fz"] if zip64 else []
    names = sorted(data)
    subprocess.run(["zip", "-q", "-X", *flags, "-s", "64k", "X.zip", *names], cwd=tmp_path, check=True)
    parts = sorted(p.name for p in tmp_path.glob("X.z*"))
    assert parts == ["X.z01", "X.z02", "X.z03", "X.zip"]
    got = {m.member: read_audio_bytes(m) for m in archive_members(str(tmp_path / "X.zip"))}
    assert got == data
    subprocess.run(["zip", "-q", "-s", "0", "X.zip", "--out", "X_full.zip"], cwd=tmp_path, check=True)
    joined = {m.member: read_audio_bytes(m) for m in archive_members(str(tmp_path / "X_full.zip"))}
    assert joined == data and not zip_reader.layout(str(tmp_path / "X_full.zip")).split


def test_damaged_archives_are_errors_not_crashes(tmp_path):
    """A crafted end record, a cut last part, a file that is no zip: OSError naming the archive (the
    manifest's reject), never a huge allocation or a read past the end."""
    root = _wavcaps(tmp_path)
    head = root / "Zip_files" / "FreeSound" / "FreeSound.zip"
    good = head.read_bytes()
    at = good.rindex(b"PK\x06\x06")  # the Zip64 end record: its central directory size at +40
    head.write_bytes(good[: at + 40] + (1 << 40).to_bytes(8, "little") + good[at + 48 :])
    with pytest.raises(OSError, match="central directory runs past the end"):
        archive_members(str(head))
    head.write_bytes(good[: len(good) // 2])  # the download of the last part was cut
    with pytest.raises(OSError, match="not a zip archive"):
        archive_members(str(head))
    head.write_bytes(b"not a zip at all")
    spec = load_spec(str(_spec(root)))
    rejects = [i for i in read_source(spec.sources[0]) if isinstance(i, Reject)]
    assert [r.code for r in rejects] == ["unreadable_metadata"] and "FreeSound.zip" in rejects[0].reason
