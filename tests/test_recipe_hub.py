"""The 2.5 M recipe on today's public copies: a small copy of each, the shipped spec, `plan` per source."""

import json
import os
import zipfile
from pathlib import Path

import pytest
import webdataset as wds
import yaml
from datasets import Audio, Dataset, Features, Value

from clap_corpus.manifests.plan import format_plan, plan_spec
from clap_corpus.pipeline import synth
from clap_corpus.pipeline.run import run_corpus
from clap_corpus.pipeline.spec import load_spec

SPEC = str(Path(__file__).resolve().parents[1] / "manifests" / "specs" / "laion_clap_2m5_hub.yaml")
_FREQ = iter(range(200, 20000, 37))


def _clip() -> bytes:
    return synth.encode_audio(synth.tone(float(next(_FREQ)), 1.0, 16000), 16000, "flac")


def _readme(root: Path, configs: dict[str, dict[str, str]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    doc = [
        {"config_name": name, "data_files": [{"split": s, "path": p} for s, p in splits.items()]}
        for name, splits in configs.items()
    ]
    (root / "README.md").write_text(f"---\n{yaml.safe_dump({'configs': doc})}---\n# card\n")


def _parquet(path: Path, id_column: str, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {id_column: Value("string"), "audio": {"bytes": Value("binary"), "path": Value("string")}}
    extra = {k: Value("string") for k in rows[0] if k not in (id_column,)}
    cols.update(extra)
    data = {k: [r.get(k) for r in rows] for k in [id_column, *extra]}
    data["audio"] = [{"bytes": _clip(), "path": f"{r[id_column]}.flac"} for r in rows]
    ds = Dataset.from_dict(data, features=Features(cols)).cast_column("audio", Audio(decode=False))
    ds.to_parquet(str(path))


def _segments(path: Path, ids: list[str]) -> None:
    lines = ["# Segments csv", "# num_ytids", "# YTID, start_seconds, end_seconds, positive_labels"]
    path.write_text("\n".join(lines + [f'{i}, 0.000, 10.000, "/m/09x0r"' for i in ids]) + "\n")


def build_hub(root: Path) -> tuple[Path, Path]:
    """Each public copy with one or two clips, and official lists naming one clip more than it holds."""
    hub, lists = root / "hub", root / "lists"
    lists.mkdir(parents=True)
    # agkphysics/AudioSet
    _readme(
        hub / "AudioSet",
        {
            "balanced": {"train": "data/bal_train/*.parquet", "test": "data/eval/*.parquet"},
            "unbalanced": {"train": "data/unbal_train/*.parquet"},
        },
    )
    a = hub / "AudioSet" / "data"
    _parquet(
        a / "bal_train" / "00.parquet", "video_id", [{"video_id": "balbalbal01", "human_labels": "Speech"}]
    )
    _parquet(a / "eval" / "00.parquet", "video_id", [{"video_id": "evalevalev1", "human_labels": "Dog"}])
    _parquet(
        a / "unbal_train" / "00.parquet",
        "video_id",
        [
            {"video_id": "unbalunbal1", "human_labels": "Music"},
            {"video_id": "unbalunbal2", "human_labels": "Rain"},
        ],
    )
    _segments(lists / "unbalanced_train_segments.csv", ["unbalunbal1", "unbalunbal2", "gonegonegon"])
    _segments(lists / "eval_segments.csv", ["evalevalev1"])
    # Meranti/CLAP_freesound
    (hub / "CLAP_freesound" / "train").mkdir(parents=True)
    with wds.TarWriter(str(hub / "CLAP_freesound" / "train" / "0.tar")) as w:
        doc = {"text": ["A door creaks."], "tag": ["door"], "original_data": {"id": 5}}
        w.write({"__key__": "0", "flac": _clip(), "json": json.dumps(doc).encode()})
    # cvssp/WavCaps, BBC subset
    meta = hub / "WavCaps" / "json_files" / "BBC_Sound_Effects" / "bbc_final.json"
    meta.parent.mkdir(parents=True)
    entry = {"id": "07070114", "description": "Birds at dawn.", "caption": "Birds chirp.", "duration": 1.0}
    meta.write_text(json.dumps({"data": [entry]}))
    zips = hub / "WavCaps" / "Zip_files" / "BBC_Sound_Effects"
    zips.mkdir(parents=True)
    with zipfile.ZipFile(zips / "BBC_Sound_Effects.zip", "w") as z:
        z.writestr("BBC_Sound_Effects_flac/07070114.flac", _clip())
    # AudioCaps and Clotho hub copies
    _readme(
        hub / "AudioCaps",
        {"default": {s: f"data/{s}-*.parquet" for s in ("train", "validation", "test")}},
    )
    for split, yid in (("train", "capcapcap01"), ("validation", "capcapval01"), ("test", "capcaptest1")):
        rows = [{"youtube_id": yid, "caption": f"A {split} caption."}]
        _parquet(hub / "AudioCaps" / "data" / f"{split}-00000-of-00001.parquet", "youtube_id", rows)
    (lists / "train.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n1,capcapcap01,0,x\n2,capmissing1,0,y\n"
    )
    (lists / "val.csv").write_text(
        "audiocap_id,youtube_id,start_time,caption\n3,capcapval01,0,a\n4,capcapval01,0,b\n"
    )
    (lists / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n5,capcaptest1,0,c\n")
    _readme(
        hub / "Clotho",
        {"default": {s: f"{s}/*.parquet" for s in ("development", "validation", "evaluation")}},
    )
    for split in ("development", "validation", "evaluation"):
        name = f"{split} sound.wav"
        _parquet(
            hub / "Clotho" / split / "0.parquet", "file_name", [{"file_name": name, "caption": f"{split}."}]
        )
        (lists / f"clotho_captions_{split}.csv").write_text(f"file_name,caption_1\n{name},A sound.\n")
    return hub, lists


@pytest.fixture
def hub_env(tmp_path, clap_data, monkeypatch):
    hub, lists = build_hub(tmp_path)
    for var in [v for v in os.environ if v.endswith("_DIR") or v in ("CLAP_DATA", "HUB", "LISTS")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HUB", str(hub))
    monkeypatch.setenv("LISTS", str(lists))
    monkeypatch.setenv("FSD50K_DIR", str(clap_data / "fsd50k"))
    monkeypatch.setenv("K2C_MODEL", "tiny")
    return tmp_path


def test_plan_says_per_source_what_is_present_and_missing(hub_env):
    spec = load_spec(SPEC)
    expected = {s.name: s.expected_count for s in spec.sources if s.expected_count is not None}
    assert len(expected) == 6  # the sources of LAION's table with a public copy
    plan = plan_spec(spec)
    coverage = {n: s["coverage"] for n, s in plan["sources"].items() if "coverage" in s}
    assert {n: (c["wanted"], c["present"], c["missing"]) for n, c in coverage.items()} == {
        "audioset_unbalanced": (3, 2, 1),
        "audioset_eval": (1, 1, 0),
        "audiocaps_train": (2, 1, 1),
        "audiocaps_val": (1, 1, 0),
        "audiocaps_test": (1, 1, 0),
        "clotho_development": (1, 1, 0),
        "clotho_validation": (1, 1, 0),
        "clotho_evaluation": (1, 1, 0),
    }
    assert (
        plan["sources"]["freesound"]["records"] == 1 and plan["sources"]["bbc_sound_effects"]["records"] == 1
    )
    text = format_plan(plan)
    assert (
        "audioset_unbalanced: the mirror holds 2 of the 3 listed rows (66.67 %), 1 missing (not_in_mirror)"
        in text
    )


def test_recipe_runs_on_the_public_copies(hub_env):
    """Only the mirrors (FSD50K's original layout is covered by the shipped spec's own tests)."""
    doc = yaml.safe_load(Path(SPEC).read_text())
    doc["sources"] = [s for s in doc["sources"] if s["adapter"] != "fsd50k"]
    doc["options"].update({"shard_size": 16, "store_mel": False})
    del doc["options"]["k2c"]
    spec = hub_env / "hub.yaml"
    spec.write_text(yaml.safe_dump(doc))
    s = run_corpus(str(spec), str(hub_env / "out"), ["--runner=FnApiRunner"])
    assert s["accounting_ok"]
    got = {n: (v["inputs"], v["samples"]) for n, v in s["sources"].items()}
    assert got["audioset_unbalanced"] == (3, 2) and got["audiocaps_train"] == (2, 1)
    assert got["freesound"] == (1, 1) and got["bbc_sound_effects"] == (1, 1)
    assert s["sources"]["audioset_unbalanced"]["coverage"]["obtained_pct"] == 66.67
    card = (hub_env / "out" / "README.md").read_text()
    assert "| audioset_unbalanced | 3 | 2 | 1 | 66.67 % | 2 | 1,912,024 |" in card
