"""Sources and outputs on an object store: a real Beam FileSystem registered under memfs://.

``MemFileSystem`` is the stand-in for the cloud service (GCS, S3): a flat in-memory object store with
no folders and no local disk behind it, so any code that reads or writes with ``open()`` or
``os.path`` instead of Beam FileSystems fails here. The pipeline runs on FnApiRunner in-process (the
registration lives in this process) and must produce the same bytes as a local run.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import posixpath
import threading
from pathlib import Path
from typing import ClassVar

import pyarrow.parquet as pq
import pytest
import yaml
from apache_beam.io.filesystem import BeamIOError, CompressedFile, CompressionTypes, FileMetadata, FileSystem
from webdataset.tariterators import group_by_keys, tar_file_expander

from clap_corpus.core.layout import Layout
from clap_corpus.manifests.source import PathRejected, SourceSpec, resolve_audio_path
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.progress import ProgressMonitor
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import load_spec
from clap_corpus.transforms import storage

RUNNER = ["--runner=FnApiRunner"]  # in-process: the memfs registration is visible to the workers
N_CLIPS = 6
BUCKET = "memfs://bucket"


class MemFileSystem(FileSystem):
    """An object store in memory: flat names, whole-object writes committed on close, no folders."""

    _objects: ClassVar[dict[str, bytes]] = {}
    _lock = threading.Lock()

    @classmethod
    def scheme(cls) -> str:
        return "memfs"

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._objects.clear()

    @classmethod
    def names(cls) -> list[str]:
        with cls._lock:
            return sorted(cls._objects)

    @classmethod
    def get(cls, path: str) -> bytes:
        with cls._lock:
            return cls._objects[path]

    def join(self, basepath: str, *paths: str) -> str:
        return posixpath.join(basepath, *paths)

    def split(self, path: str) -> tuple[str, str]:
        scheme, rest = path.split("://", 1)
        head, tail = posixpath.split(rest)
        return f"{scheme}://{head}", tail

    def mkdirs(self, path: str) -> None:
        pass  # an object store has no folders

    def has_dirs(self) -> bool:
        return False

    def _list(self, dir_or_prefix: str):
        with self._lock:
            items = sorted(self._objects.items())
        for name, data in items:
            if name.startswith(dir_or_prefix):
                yield FileMetadata(name, len(data), 0.0)

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        objects, lock = self._objects, self._lock

        class Upload(io.BytesIO):
            def close(self) -> None:
                if not self.closed:
                    with lock:
                        objects[path] = self.getvalue()
                super().close()

        return self._wrap(Upload(), path, compression_type, "wb")

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        with self._lock:
            if path not in self._objects:
                raise FileNotFoundError(f"No such object: {path}")
            data = self._objects[path]
        return self._wrap(io.BytesIO(data), path, compression_type, "rb")

    def _wrap(self, raw, path, compression_type, mode):
        compression_type = FileSystem._get_compression_type(path, compression_type)
        if compression_type == CompressionTypes.UNCOMPRESSED:
            return raw
        return CompressedFile(raw, compression_type=compression_type)

    def copy(self, source_file_names, destination_file_names):
        errors = {}
        for src, dst in zip(source_file_names, destination_file_names, strict=True):
            with self._lock:
                if src in self._objects:
                    self._objects[dst] = self._objects[src]
                else:
                    errors[(src, dst)] = FileNotFoundError(f"No such object: {src}")
        if errors:
            raise BeamIOError("Copy operation failed", errors)

    def rename(self, source_file_names, destination_file_names):
        self.copy(source_file_names, destination_file_names)  # what GCS does: copy, then delete
        self.delete(source_file_names)

    def exists(self, path: str) -> bool:
        with self._lock:
            return path in self._objects

    def size(self, path: str) -> int:
        with self._lock:
            if path not in self._objects:
                raise FileNotFoundError(f"No such object: {path}")
            return len(self._objects[path])

    def last_updated(self, path: str) -> float:
        return 0.0

    def checksum(self, path: str) -> str:
        return hashlib.sha256(self.get(path)).hexdigest()

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, self.size(path), 0.0)

    def delete(self, paths):
        errors = {}
        for path in paths:
            with self._lock:
                if path in self._objects:
                    del self._objects[path]
                else:
                    errors[path] = FileNotFoundError(f"No such object: {path}")
        if errors:
            raise BeamIOError("Delete operation failed", errors)


@pytest.fixture
def memfs():
    MemFileSystem.reset()
    yield MemFileSystem
    MemFileSystem.reset()


def _upload_tree(local_root: str, url_root: str) -> None:
    for path in sorted(glob.glob(os.path.join(local_root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            rel = os.path.relpath(path, local_root).replace(os.sep, "/")
            storage.write_bytes_atomic(f"{url_root}/{rel}", Path(path).read_bytes())


def _shard_files(names: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in names.items() if k.endswith((".tar", ".parquet", "sizes.json"))}


def test_memfs_is_a_real_beam_filesystem(memfs):
    """The scheme resolves to our class and storage.py round-trips through it (no local disk)."""
    from apache_beam.io.filesystems import FileSystems

    assert isinstance(FileSystems.get_filesystem(f"{BUCKET}/x"), MemFileSystem)
    storage.write_bytes_atomic(f"{BUCKET}/a/b.bin", b"\x00\x01")
    assert storage.read_bytes(f"{BUCKET}/a/b.bin") == b"\x00\x01" and storage.size(f"{BUCKET}/a/b.bin") == 2
    assert storage.match(f"{BUCKET}/a/*.bin") == [f"{BUCKET}/a/b.bin"]
    assert storage.match(f"{BUCKET}/**/*.bin") == [f"{BUCKET}/a/b.bin"]
    with pytest.raises(storage.FileTooLarge):
        storage.read_bytes(f"{BUCKET}/a/b.bin", max_bytes=1)
    assert memfs.names() == [f"{BUCKET}/a/b.bin"]  # the temporary name is gone after the rename


def test_pipeline_on_object_store_matches_local_run(memfs, tmp_path, monkeypatch):
    src = tmp_path / "src"
    spec_path = write_demo_corpus(str(src), n_clips=N_CLIPS, max_seconds=12.0, shard_size=2)
    local = run_corpus(spec_path, str(tmp_path / "local_out"), RUNNER)

    # The same source on the object store; the spec there uses paths relative to itself.
    _upload_tree(str(src / "raw"), f"{BUCKET}/src/raw")
    spec_doc = yaml.safe_load(Path(spec_path).read_text())
    storage.write_bytes_atomic(f"{BUCKET}/src/spec.yaml", yaml.safe_dump(spec_doc).encode())
    spec = load_spec(f"{BUCKET}/src/spec.yaml")
    assert spec.sources[0].manifest == f"{BUCKET}/src/raw/manifest.jsonl"
    assert spec.sources[0].audio_root == f"{BUCKET}/src/raw"

    # Nothing may land on the local disk: run from an empty working folder and check it stays empty.
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = f"{BUCKET}/out"
    remote = run_corpus(spec, out, RUNNER)
    assert list(work.iterdir()) == []

    assert remote["accounting_ok"] and remote["output"] == out
    for field in ("inputs", "samples", "rejects", "rejects_by_code", "splits", "hours"):
        assert remote[field] == local[field], field
    assert remote["samples"] == N_CLIPS and remote["rejects_by_code"]["outside_root"] == 1
    assert remote["rejects_by_code"]["missing_file"] == 1  # a missing object is a reject, not a crash

    # Same shards, byte for byte, as the local run.
    local_root = Path(local["output"])
    local_files = {
        str(p.relative_to(local_root)).replace(os.sep, "/"): p.read_bytes()
        for p in local_root.rglob("*")
        if p.is_file()
    }
    remote_files = {n[len(out) + 1 :]: memfs.get(n) for n in memfs.names() if n.startswith(out + "/")}
    assert _shard_files(remote_files) == _shard_files(local_files) and len(_shard_files(local_files)) > 4
    assert set(remote_files) == set(local_files)  # same set of files, report and card included
    assert not [n for n in memfs.names() if storage.TEMP_MARKER in n]

    layout = Layout(out, spec.corpus)
    for path in (
        layout.summary_path(),
        layout.plan_path(),
        layout.card_path(),
        layout.report_path("index.html"),
    ):
        assert storage.exists(path), path
    report = json.loads(storage.read_text(layout.report_path("report.json")))
    assert report["totals"]["samples"] == N_CLIPS and "durations.png" in report["plots"]

    # Readers that take file objects read the shards straight from the store (webdataset's tar
    # iterators, pyarrow).
    split = next(iter(remote["splits"]))
    sizes = json.loads(storage.read_text(layout.sizes_path(split)))
    keys = []
    for name, n in sizes.items():
        with storage.open_read(storage.join(layout.webdataset_dir(split), name)) as f:
            samples = list(group_by_keys(tar_file_expander([{"url": name, "stream": f}])))
        assert len(samples) == n
        keys += [s["__key__"] for s in samples]
    for name in sizes:
        with storage.open_read(layout.parquet_path(split, name.replace(".tar", ""))) as f:
            table = pq.read_table(f)
        keys_pq = table.column("key").to_pylist()
        assert all(k in keys for k in keys_pq)
    assert len(keys) == remote["splits"][split]["samples"]

    # The progress monitor reads the same store.
    done = ProgressMonitor(layout, spec.fingerprint(), stream=io.StringIO()).poll()
    assert (
        done.planned_records
        == done.records_done
        == remote["samples"] + sum(v["rejects"] for v in remote["splits"].values())
    )


ROOT = f"{BUCKET}/src/raw"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a.wav", f"{ROOT}/a.wav"),
        ("sub/dir/a.flac", f"{ROOT}/sub/dir/a.flac"),
        ("./sub/../a.wav", f"{ROOT}/a.wav"),
        (f"{ROOT}/a.wav", f"{ROOT}/a.wav"),
        ("../secret.wav", "outside_root"),
        ("sub/../../raw2/a.wav", "outside_root"),
        (f"{BUCKET}/src/raw2/a.wav", "outside_root"),  # a sibling whose name starts like the root
        (f"{ROOT}/../other/a.wav", "outside_root"),
        (f"{BUCKET}/a.wav", "outside_root"),
        ("/etc/passwd", "outside_root"),  # a local absolute path for an object-store source
        ("gs://bucket/src/raw/a.wav", "scheme_not_allowed"),
        ("file:///etc/passwd", "outside_root"),  # a local path in URL clothing gets the local rules
        ("", "missing_path"),
        ("a\x00.wav", "bad_path"),
    ],
)
def test_path_rules_for_an_object_store_root(value, expected):
    source = SourceSpec(name="s", adapter="generic", audio_root=ROOT)
    if expected.startswith(BUCKET):
        assert resolve_audio_path(source, value) == expected
    else:
        with pytest.raises(PathRejected) as e:
            resolve_audio_path(source, value)
        assert e.value.code == expected


def test_allowed_schemes_let_one_source_read_another_store():
    source = SourceSpec(name="s", adapter="generic", audio_root=ROOT, allowed_schemes=("gs",))
    assert resolve_audio_path(source, "gs://other/a.wav") == "gs://other/a.wav"
    with pytest.raises(PathRejected) as e:
        resolve_audio_path(source, "s3://other/a.wav")
    assert e.value.code == "scheme_not_allowed"
