"""Reading one record's audio in a worker, and the reject for a record whose audio failed.

The shard writer and the duplicate pass (which decodes every clip once before sharding) both read
audio; a file must fail the same way, with the same stage and code, in both.
"""

from __future__ import annotations

import logging

from clap_corpus.core.audio_ref import FetchedFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import Code, RejectError, Stage
from clap_corpus.manifests.source import PathRejected, check_still_inside
from clap_corpus.pipeline.spec.corpus import CorpusSpec
from clap_corpus.transforms import storage
from clap_corpus.transforms.audio_source import read_audio_bytes

log = logging.getLogger(__name__)


def read_audio(spec: CorpusSpec, record: Record) -> bytes:
    """The record's audio bytes, at most ``max_file_bytes`` of them.

    The path is checked against its source's root again here, right before reading: a symlink
    swapped in after the manifest was read must not lead outside it."""
    if not isinstance(record.audio, FetchedFile):  # the fetch cache is ours, not the source's root
        check_still_inside(spec.source(record.source), record.audio.storage_path)
    return read_audio_bytes(record.audio, max_bytes=spec.options.sample.max_file_bytes)


def failure_reject(record: Record, error: Exception) -> Reject:
    """The reject for a record whose audio could not be read or made into a sample.

    Dispatches on the error's type only: every per-input failure is a :class:`RejectError`, and
    ``transforms.storage`` turns what the filesystem layer raises into FileNotFoundError, OSError or
    :class:`storage.FileTooLarge`. Anything else is a bug, logged with its traceback."""
    if isinstance(error, PathRejected):
        # The path rule checked again right before reading (a link swapped in): a read failure here.
        return Reject.for_record(record, Stage.READ, error.code, error.reason)
    if isinstance(error, RejectError):
        return Reject.for_record(record, error.stage, error.code, error.reason)
    if isinstance(error, storage.FileTooLarge):
        return Reject.for_record(record, Stage.READ, Code.TOO_LARGE, str(error))
    if isinstance(error, FileNotFoundError):
        return Reject.for_record(
            record, Stage.READ, Code.MISSING_FILE, f"audio file not found: {record.audio}"
        )
    if isinstance(error, OSError):
        return Reject.for_record(
            record, Stage.READ, Code.READ_ERROR, f"could not read the audio file: {str(error)[:300]}"
        )
    log.error("sample %s failed unexpectedly", record.key, exc_info=error)
    return Reject.for_record(
        record, Stage.PROCESS, Code.INTERNAL_ERROR, f"unexpected {type(error).__name__}: {str(error)[:300]}"
    )
