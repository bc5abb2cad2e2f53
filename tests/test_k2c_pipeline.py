"""K2C end to end: the demo corpus (K2C on, the embedded model) through the real pipeline on the local
runner, read back from the tars and the Parquet files: JSON fields, short clips, counts, bad keywords."""

from __future__ import annotations

import glob
import json
import os
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from clap_corpus.k2c.debias import contains_gendered
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import load_spec

# every test reads the corpus built once here with K2C's model (over a minute)
pytestmark = pytest.mark.slow

SEED = 1  # with this seed, clip 0004 (label-only "Chirp") is 1.25 s long: under the 2 s K2C minimum
N_CLIPS = 12

# Rows added to the demo manifest: real audio, awkward keywords. None may crash the run or vanish.
EXTRA_ROWS = [
    {"audio": "0001_high_tone.ogg", "id": "non_latin", "keywords": ["犬", "猫", "Кошка"]},
    {"audio": "0002_white_noise.opus", "id": "thousands", "keywords": [f"tag{i}" for i in range(3000)]},
    {
        "audio": "0005_falling_chirp.wav",
        "id": "pipes",
        "keywords": ["Sweep|", "falling.", "tone", "tone"],
    },
    {"audio": "0008_low_tone.m4a", "id": "periods", "labels": ["Hum", "hum"], "keywords": ["a.m.", "..."]},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("k2c_demo")
    spec_path = write_demo_corpus(str(root), n_clips=N_CLIPS, seed=SEED, max_seconds=25.0, shard_size=4)
    raw = root / "raw"
    files = {os.path.basename(p) for p in glob.glob(str(raw / "*"))}
    with open(raw / "manifest.jsonl", "a", encoding="utf-8") as f:
        for row in EXTRA_ROWS:
            assert row["audio"] in files, row["audio"]  # the demo's file names for this seed
            f.write(json.dumps(row) + "\n")
    # The extra rows reuse the demo's audio under other ids, and may land in another split: keep every
    # copy here (removing train copies of held-out audio is tests/test_duplicates_cross_split.py's job).
    spec = yaml.safe_load(Path(spec_path).read_text(encoding="utf-8"))
    spec["options"]["cross_split_duplicates"] = "report"
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f)
    assert load_spec(spec_path).options.k2c is not None  # the demo turns K2C on by default
    out = str(tmp_path_factory.mktemp("k2c_out"))
    summary = run_corpus(spec_path, out, ["--runner=FnApiRunner"])
    samples = {}
    for path in glob.glob(f"{out}/webdataset/demo/*/*.tar"):
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tf.extractfile(m).read())
                    samples[meta["source_id"]] = meta
    rows = {}
    for path in glob.glob(f"{out}/parquet/*/*.parquet"):
        for row in pq.read_table(path).to_pylist():
            rows[row["source_id"]] = row
    return summary, samples, rows


def test_accounting_and_stage_report(built):
    summary, samples, _ = built
    assert summary["accounting_ok"]
    assert len(samples) == N_CLIPS + len(EXTRA_ROWS)
    report = summary["stages"]["k2c"]
    assert report["model"] == "tiny" and report["preset"] == "k2t"
    assert report["fallbacks"].get("non_latin") == 1
    assert report["truncated_keyword_lists"] == 1
    # "pipes" normalizes to clip 0005's set {falling, sweep, tone}: one model input for both
    assert report["model_inputs"] == report["through_model"] - 1
    assert samples["pipes"]["text_augment_t5"] == samples["0005_falling_chirp"]["text_augment_t5"]
    shipped = [m for m in samples.values() if "text_augment_t5" in m]
    assert summary["k2c_captions"] == len(shipped)
    assert summary["k2c_skipped_short"] == 1
    assert report["generated"] == len(shipped) + summary["k2c_skipped_short"]


def test_json_fields(built):
    _, samples, rows = built
    for sid, meta in samples.items():
        template_kind = not meta["text"] or meta["caption_kind"] in ("template", "k2c", "mixed")
        if "text_augment_t5" in meta:
            cap = meta["text_augment_t5"]
            # demo: join mode; `text` keeps the template caption only, as LAION's `none` expects
            assert meta["caption_kind"] == "mixed" and cap not in meta["text"] and len(meta["text"]) == 1
            assert meta["text_augment_all"] == [*meta["text"], cap]  # the template caption, then the K2C one
            assert meta["text_augment_all"][0].startswith(("The sound", "A sound tagged"))
            assert meta["duration"] >= 2.0
            assert cap[0].isupper() and cap.endswith(".") and not contains_gendered(cap)
            assert rows[sid]["text_augment_t5"] == cap and rows[sid]["text"] == meta["text"]
        else:
            assert "text_augment_all" not in meta and rows[sid]["text_augment_t5"] is None
            if template_kind:
                assert meta["caption_kind"] == "template" and len(meta["text"]) == 1
        if meta["caption_kind"] == "source":
            assert "text_augment_t5" not in meta


def test_who_gets_k2c(built):
    _, samples, _ = built
    short = samples["0004_rising_chirp"]
    assert short["duration"] < 2.0 and short["text"] == ["The sound of chirp."]
    assert "text_augment_t5" not in short and short["caption_kind"] == "template"
    assert "text_augment_t5" not in samples["non_latin"] and samples["non_latin"]["text"] == [
        "A sound tagged 犬, 猫 and кошка."
    ]
    for sid in ("thousands", "pipes", "periods"):
        assert "text_augment_t5" in samples[sid], sid
    # every label-only and keyword-only demo clip of 2 s or more ships a K2C caption
    for sid, meta in samples.items():
        if sid[:4].isdigit() and meta["caption_kind"] != "source" and meta["duration"] >= 2.0:
            assert "text_augment_t5" in meta, (sid, meta["text"])
