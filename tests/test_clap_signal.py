"""CLAP scoring with a model that learned something: a checkpoint of the bundled trainer, trained here
on the demo corpus with described captions (eight kinds of sound at two loudness levels).

- the signal: a sample's own caption scores above another sample's caption for >= 90 % of samples;
- the content guard: a held-out clip re-encoded (mp3), 3 dB quieter and shifted by 70 ms, planted in
  train under another id and other captions, is removed as ``eval_overlap_content``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from clap_corpus.pipeline import synth
from clap_corpus.pipeline.cli import main as cli_main
from clap_corpus.pipeline.demo import write_demo_corpus
from clap_corpus.pipeline.run import run_corpus
from clap_corpus.transforms.decode import decode_audio

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
RUNNER = ["--runner=FnApiRunner"]
N_CLIPS = 160  # every 5th clip is `valid`
PLANTED = "planted_copy"


def _plant_near_copy(src: str) -> tuple[dict, dict]:
    """A held-out clip re-encoded, quieter and shifted, as a train row: (held-out row, planted row)."""
    raw = os.path.join(src, "raw")
    held = next(r for r in _rows(src) if r.get("split") == "val")
    with open(os.path.join(raw, held["audio"]), "rb") as f:
        decoded = decode_audio(f.read())
    shift = int(0.07 * 48_000)
    copy = np.concatenate([np.zeros(shift, np.float32), decoded.samples * np.float32(10 ** (-3 / 20))])
    with open(os.path.join(raw, f"{PLANTED}.mp3"), "wb") as f:
        f.write(synth.encode_audio(copy, 48_000, "mp3"))
    return held, {"audio": f"{PLANTED}.mp3", "id": PLANTED, "captions": ["A recording someone uploaded"]}


def _rows(src: str) -> list[dict]:
    with open(os.path.join(src, "raw", "manifest.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _spec_with(src: str, name: str, clap: dict, rows: list[dict] | None = None) -> str:
    """A spec beside the demo's, reading the same audio, with options.clap (and its own manifest)."""
    with open(os.path.join(src, "spec.yaml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    doc["options"]["clap"] = clap
    if rows is not None:
        with open(os.path.join(src, f"{name}.jsonl"), "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        doc["sources"][0]["manifest"] = f"{name}.jsonl"
        doc["sources"][0]["expected_count"] = len(rows)
    path = os.path.join(src, f"{name}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, str]:
    """(the demo's source folder, the trained run's folder)."""
    root = tmp_path_factory.mktemp("clap_signal")
    src = str(root / "src")
    opts = {"split_proportions": {"train": 1.0}}
    spec = write_demo_corpus(
        src, n_clips=N_CLIPS, max_seconds=12.0, bad_rows=False, annotation="described",
        shard_size=32, corpus="clapdemo", k2c_model=None, extra_options=opts,
    )  # fmt: skip
    built = str(root / "built")
    assert run_corpus(spec, built, RUNNER)["accounting_ok"]
    model = str(root / "clap")
    code = cli_main(
        [
            *("train", "--data", built, "--output", model, "--audio-encoder", "cnn", "--text-model", "tiny"),
            *("--batch-size", "16", "--epochs", "5", "--lr", "1e-3", "--warmup-steps", "10"),
            *("--eval-every-epochs", "0", "--threads", "1", "--log-level", "WARNING"),
        ]
    )
    assert code == 0
    return src, model


def _embeddings(out: str) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    keys, audio, texts = [], [], []
    for split in ("train", "valid"):
        folder = os.path.join(out, "clap", split)
        for name in sorted(os.listdir(folder)):
            for row in pq.read_table(os.path.join(folder, name)).to_pylist():
                keys.append(row["key"])
                audio.append(np.frombuffer(row["audio_embedding"], "<f2").astype(np.float64))
                n = len(row["clap_scores"])
                texts.append(np.frombuffer(row["text_embeddings"], "<f2").astype(np.float64).reshape(n, -1))
    return keys, np.stack(audio), texts


def test_matched_pairs_score_above_shuffled_ones(trained, tmp_path):
    src, model = trained
    spec = _spec_with(src, "signal", {"model": model, "content_overlap": "off"})
    summary = run_corpus(spec, str(tmp_path / "out"), RUNNER)
    assert summary["accounting_ok"] and summary["stages"]["clap"]["kind"] == "trainer"
    keys, audio, texts = _embeddings(str(tmp_path / "out"))
    assert len(keys) == summary["samples"] == N_CLIPS
    rng = np.random.default_rng(0)
    own = [t[0] for t in texts]
    wins = 0
    for i in range(len(keys)):
        # a partner whose caption differs (clips of one kind and loudness share their captions)
        j = next(j for j in rng.permutation(len(keys)) if not np.array_equal(own[j], own[i]))
        wins += float(audio[i] @ own[i]) > float(audio[i] @ own[j])
    print(f"matched above shuffled: {wins}/{len(keys)} = {wins / len(keys):.3f}")
    assert wins / len(keys) >= 0.9


def test_a_planted_near_copy_of_a_heldout_clip_is_removed(trained, tmp_path):
    """The held-out clip, the planted copy and train clips of the other kinds (the demo's clips of one
    kind are the same synthetic sound, a near copy of each other by construction)."""
    src, model = trained
    held, planted = _plant_near_copy(src)
    others = [r for r in _rows(src) if r.get("split") != "val" and r["kind"] != held["kind"]][:8]
    spec = _spec_with(src, "guard", {"model": model, "content_threshold": 0.97}, [held, planted, *others])
    out = str(tmp_path / "out")
    summary = run_corpus(spec, out, RUNNER)
    assert summary["accounting_ok"] and summary["samples"] == len(others) + 1
    with open(os.path.join(out, "rejects", "manifest", "synthetic.jsonl"), encoding="utf-8") as f:
        rejects = [r for r in map(json.loads, f) if r["code"] == "eval_overlap_content"]
    stage = summary["stages"]["clap"]
    print(
        "closest pairs:", [(p["train"]["key"], p["similarity"]) for p in stage["closest_cross_split_pairs"]]
    )
    assert [r["source_id"] for r in rejects] == [PLANTED]
    assert held["id"].replace("_", "-") in rejects[0]["reason"]
    closest = stage["closest_cross_split_pairs"][0]
    assert closest["removed"] and closest["train"]["key"] == rejects[0]["key"]
    assert all(p["similarity"] < 0.97 for p in stage["closest_cross_split_pairs"][1:])


def test_near_duplicates_across_sources_keep_the_first_source(trained, tmp_path):
    """Source `a`: one clip of four kinds; source `b`: two of them re-encoded, quieter and shifted,
    and clips of two other kinds. With duplicates: keep_first the copies in `b` go."""
    src, model = trained
    rows = [r for r in _rows(src) if r.get("split") != "val"]
    by_kind: dict[str, dict] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], r)
    kinds = sorted(by_kind)
    a_rows = [by_kind[k] for k in kinds[:4]]
    b_rows = []
    for r in a_rows[:2]:
        with open(os.path.join(src, "raw", r["audio"]), "rb") as f:
            samples = decode_audio(f.read()).samples
        copy = np.concatenate([np.zeros(2400, np.float32), samples * np.float32(0.8)])
        name = f"copy_{r['id']}.mp3"
        with open(os.path.join(src, "raw", name), "wb") as f:
            f.write(synth.encode_audio(copy, 48_000, "mp3"))
        b_rows.append({"audio": name, "id": f"copy_{r['id']}", "captions": ["an upload"]})
    b_rows += [by_kind[k] for k in kinds[4:6]]
    near = {"model": model, "near_duplicate_threshold": 0.97, "near_duplicate_partitions": 3}
    spec_path = _spec_with(src, "near_a", near, a_rows)
    with open(spec_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    with open(os.path.join(src, "near_b.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in b_rows)
    doc["options"]["duplicates"] = "keep_first"
    doc["sources"].append({**doc["sources"][0], "name": "b", "manifest": "near_b.jsonl", "expected_count": 4})
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    out = tmp_path / "out"
    summary = run_corpus(spec_path, str(out), RUNNER)
    assert summary["accounting_ok"] and summary["samples"] == 6
    groups = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    near = [g for g in groups if g.get("method") == "clap_audio_embedding"]
    print("near groups:", [([m["key"] for m in g["samples"]], g["similarity"]) for g in near])
    assert len(near) == 2 and all(g["similarity"] >= 0.97 for g in near)
    for g in near:
        assert [(m["source"], m["kept"]) for m in g["samples"]] == [("synthetic", True), ("b", False)]
    with open(out / "rejects" / "manifest" / "b.jsonl", encoding="utf-8") as f:
        codes = sorted(json.loads(line)["code"] for line in f)
    assert codes == ["near_duplicate_audio", "near_duplicate_audio"]
