"""Reading a record's audio in a worker: the shard writer and the duplicate pass reject a bad file
with the same stage and code (pipeline/stages/audio_input.py)."""

import os

import numpy as np
import pytest
from helpers.records import make_record

from clap_corpus.core.rejects import RejectError
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.spec.corpus import parse_spec
from clap_corpus.pipeline.stages.audio_input import failure_reject, read_audio
from clap_corpus.pipeline.stages.duplicates import REJECTS, _HashAudioFn
from clap_corpus.transforms import storage


def _spec(root, max_file_bytes=1_000_000):
    doc = {
        "corpus": "c",
        "options": {"max_file_bytes": max_file_bytes},
        "sources": [{"name": "s", "adapter": "generic", "manifest": __file__, "audio_root": str(root)}],
    }
    return parse_spec(doc, str(root / "spec.yaml"))


@pytest.fixture
def files(tmp_path):
    root = tmp_path / "audio"
    root.mkdir()
    tone = synth.tone(440.0, 1.0, 16_000)
    (root / "good.flac").write_bytes(synth.encode_audio(tone, 16_000, "flac"))
    (root / "text.wav").write_bytes(b"this is not audio at all\n" * 40)
    (root / "big.wav").write_bytes(synth.encode_audio(np.tile(tone, 20), 16_000, "wav"))
    outside = tmp_path / "secret.wav"
    outside.write_bytes(synth.encode_audio(tone, 16_000, "wav"))
    os.symlink(outside, root / "link.wav")
    return root


CASES = [
    ("missing.wav", "read", "missing_file"),
    ("text.wav", "decode", "not_audio"),
    ("big.wav", "read", "too_large"),
    ("link.wav", "read", "outside_root"),
]


@pytest.mark.parametrize(("name", "stage", "code"), CASES)
def test_a_bad_file_gets_the_same_reject_in_the_duplicate_pass(files, name, stage, code):
    spec = _spec(files, max_file_bytes=200_000)
    out = list(_HashAudioFn(spec).process(make_record("k1", audio=files / name, row=3, split="train")))
    assert len(out) == 1 and out[0].tag == REJECTS
    rej = out[0].value
    assert (rej.stage, rej.code, rej.key, rej.row) == (stage, code, "k1", 3), rej


def test_a_good_file_gives_its_digest(files):
    ((digest, record),) = _HashAudioFn(_spec(files)).process(
        make_record("k1", audio=files / "good.flac", row=3, split="train")
    )
    assert len(digest) == 32 and record.key == "k1"
    assert read_audio(
        _spec(files), make_record("k1", audio=files / "good.flac", row=3, split="train")
    ).startswith(b"fLaC")


@pytest.mark.parametrize("max_bytes", [None, 1_000_000])
def test_storage_says_missing_by_type(tmp_path, max_bytes):
    # Beam's local filesystem wraps a missing file in a BeamIOError when asked its size.
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(str(tmp_path / "gone.wav"), max_bytes=max_bytes)
    with pytest.raises(OSError) as e:
        storage.read_bytes(str(tmp_path), max_bytes=max_bytes)  # a folder exists but is no file
    assert not isinstance(e.value, FileNotFoundError)
    rej = failure_reject(make_record("k1", audio=tmp_path, row=3, split="train"), e.value)
    assert (rej.stage, rej.code) == ("read", "read_error")


def test_failure_classification():
    rec = make_record("k1", audio="/a/b.wav", row=3, split="train")
    assert failure_reject(rec, RejectError("views", "views_failed", "x")).stage == "views"
    assert failure_reject(rec, FileNotFoundError("gone")).code == "missing_file"
    assert failure_reject(rec, PermissionError("denied")).code == "read_error"
    unexpected = failure_reject(rec, KeyError("bug"))
    assert (unexpected.stage, unexpected.code) == ("process", "internal_error")
    assert "KeyError" in unexpected.reason
