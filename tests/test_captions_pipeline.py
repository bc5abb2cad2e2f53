"""Hostile caption text through a real run: a generic manifest in, rejects and clean shards out."""

from __future__ import annotations

import glob
import json
import unicodedata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import SpecError, parse_spec

RUNNER = ["--runner=FnApiRunner"]
HOSTILE = (
    "A dog\x00 barks\x1b[31m loudly\x1b[0m \x1b]0;pwned\x07in the \u202erain\u202c\u2066\u2069"
    " at\u200b night\x85"
)
FREESOUND_TAGS = ["field-recording", "bird", "ambience", "stereo", "zoom-h4n", "44.1khz", "loop", "bright"]
ROWS = {
    "hostile": {
        "captions": [HOSTILE, "\x00\u202e", "A cafe\u0301 at dusk.\x9b2J"],
        "labels": ["Dog\x1b[2J", "\u200b"],
        "license": "CC-BY-4.0\x00",
        "attribution": "by \u202emallory\u202c",
        "notes": "line one\nline two\x1b[31m \u202eevil",
    },
    "long": {"captions": ["x" * 200_000]},
    "one_long": {"captions": ["A fine caption.", "y" * 1001]},
    "emptied": {"captions": ["\x00\u202e\x1b[0m"]},
    "tags": {"keywords": FREESOUND_TAGS},
    "technical_only": {"keywords": ["stereo", "wav", "48khz", "zoom-h4n"]},
    "labels": {"labels": ["Rain", "Thunder"]},
}


# Format characters a caption may keep (ZWNJ, ZWJ, visible concatenation marks); written out here so
# that this test does not take the rule from the code it checks.
KEPT_FORMAT = set("\u200c\u200d\u0600\u0601\u0602\u0603\u0604\u0605\u06dd\u070f\u0890\u0891\u08e2")


def _forbidden(text: str) -> list[str]:
    return [
        ascii(ch)
        for ch in text
        if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
        or (unicodedata.category(ch) == "Cf" and ch not in KEPT_FORMAT)
    ]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("captions_run")
    audio = root / "audio"
    audio.mkdir()
    clip = synth.encode_audio(synth.tone(440.0, 1.0, 16_000), 16_000, "flac")
    lines = []
    for sid, row in ROWS.items():
        (audio / f"{sid}.flac").write_bytes(clip)
        # an id with hostile characters too: the sample says "hostile", its key stays the exact id's
        raw_id = sid + "\x1b[2J\u202e" if sid == "hostile" else sid
        lines.append(json.dumps({"audio": f"{sid}.flac", "id": raw_id, **row}) + "\n")
    (root / "m.jsonl").write_text("".join(lines), encoding="utf-8")
    spec = {
        "corpus": "caps",
        "options": {"shard_size": 4, "split_proportions": {"train": 1.0}, "store_mel": False},
        "sources": [{"name": "src", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "audio"}],
    }
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = root / "out"
    summary = run_corpus(str(root / "spec.yaml"), str(out), RUNNER)
    return summary, out


def test_hostile_captions_become_rejects_or_clean_text(run):
    summary, out = run
    assert summary["accounting_ok"] and summary["samples"] == 3 and summary["rejects"] == 4
    rejects = {
        r["source_id"]: r
        for path in glob.glob(f"{out}/rejects/**/*.jsonl", recursive=True)
        for r in map(json.loads, Path(path).read_text().splitlines())
    }
    assert {k: (r["stage"], r["code"]) for k, r in rejects.items()} == {
        "long": ("captions", "caption_too_long"),
        "one_long": ("captions", "caption_too_long"),
        "emptied": ("captions", "no_text"),
        "technical_only": ("captions", "no_text"),
    }
    assert "200000 characters" in rejects["long"]["reason"]

    # the tars, read the way LAION-CLAP reads them
    tars = sorted(glob.glob(f"{out}/webdataset/caps/train/*.tar"))
    docs = {d["json"]["source_id"]: d["json"] for d in wds.WebDataset(tars, shardshuffle=False).decode()}
    assert sorted(docs) == ["hostile", "labels", "tags"]
    hostile = docs["hostile"]
    assert hostile["text"] == ["A dog barks loudly in the rain at night", "A café at dusk."]
    assert hostile["labels"] == hostile["tag"] == ["Dog"]
    assert hostile["license"] == "CC-BY-4.0" and hostile["attribution"] == "by mallory"
    assert hostile["original_data"]["notes"] == "line one line two evil"
    assert docs["tags"]["text"] == ["A sound tagged field-recording, bird, ambience, loop and bright."]
    assert docs["tags"]["tag"] == FREESOUND_TAGS  # technical tags stay in `tag`
    assert docs["labels"]["text"] == ["The sounds of rain and thunder."]
    for sid, doc in docs.items():
        bad = [(s[:40], _forbidden(s)) for s in _strings(doc) if _forbidden(s)]
        assert not bad, (sid, bad)

    rows = [r for p in glob.glob(f"{out}/parquet/*/*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(rows) == 3
    for row in rows:
        row.pop("audio")
        assert row["text"] == docs[row["source_id"]]["text"]
        bad = [(s[:40], _forbidden(s)) for s in _strings(row) if _forbidden(s)]
        assert not bad, (row["source_id"], bad)


def test_the_caption_cap_is_an_option():
    base = {
        "corpus": "c",
        "sources": [{"name": "s", "adapter": "generic", "manifest": __file__, "audio_root": "."}],
    }
    assert parse_spec(base, __file__).options.max_caption_chars == 1000
    assert (
        parse_spec({**base, "options": {"max_caption_chars": 50}}, __file__).options.max_caption_chars == 50
    )
    with pytest.raises(SpecError, match="max_caption_chars"):
        parse_spec({**base, "options": {"max_caption_chars": 0}}, __file__)
    k2c = {"max_caption_chars": 50, "k2c": {"model": "tiny", "max_caption_chars": 200}}
    with pytest.raises(
        SpecError,
        match=r"options.k2c.max_caption_chars: must not exceed options.max_caption_chars \(50\), got 200",
    ):
        parse_spec({**base, "options": k2c}, __file__)
