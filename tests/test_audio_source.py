"""Typed audio references (core.audio_ref) and reading each kind (transforms.audio_source)."""

import io
import pickle
import tarfile
import zipfile

import pytest

from clap_corpus.core.audio_ref import ArchiveMember, EmbeddedCell, LocalFile, RemoteFile, file_ref
from clap_corpus.core.records import Record, Reject
from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_audio_bytes
from clap_corpus.transforms.decode import decode_audio


@pytest.fixture(scope="module")
def flac() -> bytes:
    return synth.encode_audio(synth.tone(440.0, 0.5, 16_000), 16_000, "flac")


def _tar(path, members: dict[str, bytes], mode: str = "w") -> str:
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return str(path)


def test_each_kind_renders_the_string_records_carried_before():
    assert str(LocalFile("/a/b.wav")) == "/a/b.wav"
    assert str(RemoteFile("gs://b/a.wav")) == "gs://b/a.wav"
    assert str(EmbeddedCell("/d/x.arrow", "audio", 12)) == "/d/x.arrow::audio::12"
    assert str(ArchiveMember("/d/x.tar", "clips/a.flac")) == "/d/x.tar::clips/a.flac"
    assert EmbeddedCell("/d/x.arrow", "audio", 1).storage_path == "/d/x.arrow"
    assert ArchiveMember("s3://b/x.zip", "a").storage_path == "s3://b/x.zip"
    assert file_ref("gs://b/a.wav") == RemoteFile("gs://b/a.wav")
    assert file_ref("/a.wav") == LocalFile("/a.wav")


def test_a_reject_names_the_reference_as_before_and_records_survive_pickling():
    r = Record(key="s_x_0", source="s", source_id="x", audio=EmbeddedCell("/d/x.parquet", "wav", 3), row=4)
    assert Reject.for_record(r, "read", "read_error", "boom").path == "/d/x.parquet::wav::3"
    assert pickle.loads(pickle.dumps(r)) == r  # what a Beam shuffle does to it


@pytest.mark.parametrize(("name", "mode"), [("a.tar", "w"), ("a.tar.gz", "w:gz"), ("a.tgz", "w:gz")])
def test_a_tar_member_is_read_in_place(tmp_path, flac, name, mode):
    archive = _tar(tmp_path / name, {"clips/one.flac": flac, "clips/two.txt": b"x"}, mode)
    data = read_audio_bytes(ArchiveMember(archive, "clips/one.flac"))
    assert data == flac
    assert decode_audio(data).samples.shape[-1] > 0  # it is the audio, whole
    with pytest.raises(FileNotFoundError):
        read_audio_bytes(ArchiveMember(archive, "clips/three.flac"))
    with pytest.raises(storage.FileTooLarge):
        read_audio_bytes(ArchiveMember(archive, "clips/one.flac"), max_bytes=len(flac) - 1)


def test_a_zip_member_is_read_in_place(tmp_path, flac):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("one.flac", flac)
        z.writestr("sub/", b"")
    assert read_audio_bytes(ArchiveMember(str(path), "one.flac"), max_bytes=len(flac)) == flac
    with pytest.raises(FileNotFoundError):
        read_audio_bytes(ArchiveMember(str(path), "two.flac"))
    with pytest.raises(OSError, match="folder"):
        read_audio_bytes(ArchiveMember(str(path), "sub/"))
    with pytest.raises(storage.FileTooLarge):
        read_audio_bytes(ArchiveMember(str(path), "one.flac"), max_bytes=100)


def test_a_link_member_or_a_broken_archive_is_a_read_error_not_other_bytes(tmp_path, flac):
    path = tmp_path / "links.tar"
    with tarfile.open(path, "w") as t:
        info = tarfile.TarInfo("real.flac")
        info.size = len(flac)
        t.addfile(info, io.BytesIO(flac))
        link = tarfile.TarInfo("alias.flac")
        link.type, link.linkname = tarfile.SYMTYPE, "real.flac"
        t.addfile(link)
    with pytest.raises(OSError, match="not a regular file"):
        read_audio_bytes(ArchiveMember(str(path), "alias.flac"))
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"this is no archive at all" * 40)
    with pytest.raises(OSError, match="cannot read"):
        read_audio_bytes(ArchiveMember(str(broken), "a.flac"))
    with pytest.raises(FileNotFoundError):
        read_audio_bytes(ArchiveMember(str(tmp_path / "gone.zip"), "a.flac"))


def test_plain_files_keep_the_size_cap(tmp_path, flac):
    path = tmp_path / "a.flac"
    path.write_bytes(flac)
    assert read_audio_bytes(LocalFile(str(path))) == flac
    with pytest.raises(storage.FileTooLarge):
        read_audio_bytes(LocalFile(str(path)), max_bytes=10)


def test_a_tar_member_is_read_at_its_offset_and_a_stale_offset_is_not_other_bytes(tmp_path, flac):
    long_name = "x" * 120 + ".flac"  # over the 100-byte ustar name: an extended header comes first
    path = _tar(tmp_path / "a.tar", {"pad.flac": b"0" * 3000, long_name: flac, "b.flac": flac[::-1]})
    with tarfile.open(path) as t:
        offsets = {m.name: m.offset for m in t.getmembers()}
    assert read_audio_bytes(ArchiveMember(path, long_name, offsets[long_name]), max_bytes=len(flac)) == flac
    assert read_audio_bytes(ArchiveMember(path, "b.flac", offsets["b.flac"])) == flac[::-1]
    with pytest.raises(FileNotFoundError, match="the tar changed"):
        read_audio_bytes(ArchiveMember(path, "b.flac", offsets[long_name]))
    with pytest.raises(storage.FileTooLarge):
        read_audio_bytes(ArchiveMember(path, "b.flac", offsets["b.flac"]), max_bytes=100)
    cut = tmp_path / "cut.tar"
    cut.write_bytes((tmp_path / "a.tar").read_bytes()[: offsets["b.flac"] + 512 + 10])
    with pytest.raises(OSError, match="unexpected end of data"):
        read_audio_bytes(ArchiveMember(str(cut), "b.flac", offsets["b.flac"]))


def test_a_zip_bomb_that_understates_its_size_is_never_read_past_the_cap(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.flac", b"\0" * (8 << 20))  # 8 MiB of zeros: about 8 KiB deflated
    data = bytearray(path.read_bytes())
    data[22:26] = (1000).to_bytes(4, "little")  # the local header's uncompressed size
    central = data.index(b"PK\x01\x02")
    data[central + 24 : central + 28] = (1000).to_bytes(4, "little")  # ... and the directory's
    path.write_bytes(bytes(data))
    with pytest.raises(OSError):  # the bytes past the declared size fail the CRC: a read error
        read_audio_bytes(ArchiveMember(str(path), "bomb.flac"), max_bytes=1 << 20)
    with pytest.raises(OSError, match="Bad CRC"):  # without a cap too: zipfile stops at the declared size
        read_audio_bytes(ArchiveMember(str(path), "bomb.flac"), max_bytes=None)
