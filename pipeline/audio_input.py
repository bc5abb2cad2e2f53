"""Reading one record's audio in a worker, and the reject for a record whose audio failed.

The shard writer and the duplicate pass (which decodes every clip once before sharding) both read
audio; a file must fail the same way, with the same stage and code, in both.
"""

from __future__ import annotations

import logging

from core.records import Record, Reject
from manifests.source import PathRejected, check_still_inside
from pipeline.spec import CorpusSpec
from transforms import storage
from transforms.audio_source import read_audio_bytes
from transforms.sample import SampleError

log = logging.getLogger(__name__)


def read_audio(spec: CorpusSpec, record: Record) -> bytes:
    """The record's audio bytes, at most ``max_file_bytes`` of them.

    The path is checked against its source's root again here, right before reading: a symlink
    swapped in after the manifest was read must not lead outside it."""
    check_still_inside(spec.source(record.source), record.audio.storage_path)
    return read_audio_bytes(record.audio, max_bytes=spec.options.sample.max_file_bytes)


def failure_reject(record: Record, error: Exception) -> Reject:
    """The reject for a record whose audio could not be read or made into a sample."""
    if isinstance(error, SampleError):
        return Reject.for_record(record, error.stage, error.code, error.reason)
    if isinstance(error, PathRejected):
        return Reject.for_record(record, "read", error.code, error.reason)
    if isinstance(error, storage.FileTooLarge):
        return Reject.for_record(record, "read", "too_large", str(error))
    text = str(error)
    if isinstance(error, FileNotFoundError) or "No such file" in text or "not found" in text.lower():
        return Reject.for_record(record, "read", "missing_file", f"audio file not found: {record.audio}")
    if isinstance(error, OSError) or type(error).__name__ == "BeamIOError":
        return Reject.for_record(record, "read", "read_error", f"could not read the audio file: {text[:300]}")
    log.error("sample %s failed unexpectedly", record.key, exc_info=error)
    return Reject.for_record(
        record, "process", "internal_error", f"unexpected {type(error).__name__}: {text[:300]}"
    )
