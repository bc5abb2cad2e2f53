"""The shipped 2.5 M spec through `clapcorpus run`, on small copies of every source it names.

One Beam run (FnApiRunner) covers the AudioSet, AudioCaps, Clotho, FSD50K, Freesound-style, caption
file and filename adapters, the leakage guard (AudioCaps test clips listed in AudioSet's train
segments; Freesound clips held out by Clotho and FSD50K), the duplicates report, the expected-count
comparison and license pass-through into the JSON and the Parquet.
"""

import contextlib
import glob
import io
import json
import os
import tarfile
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fixtures_sources import FACTS, FS_IN_ESC50, FS_LEAK_CLOTHO, FS_LEAK_FSD, LEAK

from clap_corpus.manifests.plan import plan_spec
from clap_corpus.pipeline.cli.main import main
from clap_corpus.pipeline.spec.corpus import load_spec

# every test reads the corpus built once here from every shipped source (about 35 s)
pytestmark = pytest.mark.slow

SPEC = str(Path(__file__).resolve().parents[1] / "manifests" / "specs" / "laion_clap_2m5.yaml")


@pytest.fixture(scope="module")
def built(clap_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("clap_2m5_out")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CLAP_DATA", str(clap_data))
        mp.setenv("K2C_MODEL", "tiny")  # the spec's K2C step, with the embedded model
        with contextlib.redirect_stdout(printed):
            rc = main(["run", "--spec", SPEC, "--output", str(out), "--runner=FnApiRunner"])
        plan = plan_spec(load_spec(SPEC), check_audio=True)
    summary = json.loads((out / "summary.json").read_text())
    return out, rc, printed.getvalue(), summary, plan


def _samples(out: Path) -> dict[str, dict]:
    """key -> JSON document, for every sample of every tar."""
    docs = {}
    for path in glob.glob(f"{out}/webdataset/*/*/*.tar"):
        with tarfile.open(path) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".json"):
                    doc = json.loads(tf.extractfile(m).read())
                    docs[doc["key"]] = doc
    return docs


def test_counts_per_source_expected_delta_and_accounting(built):
    _, rc, printed, s, _ = built
    assert rc == 0 and s["accounting_ok"]
    for name, (inputs, samples, rejects) in FACTS["counts"].items():
        src = s["sources"][name]
        assert (src["inputs"], src["samples"], src["rejects"]) == (inputs, samples, rejects), name
        expected = src["expected"]
        assert src["expected_delta"] == (None if expected is None else samples - expected), name
    assert s["sources"]["audioset_unbalanced"]["expected_delta"] == 4 - 1912024
    header = next(line for line in printed.splitlines() if "expected" in line)
    assert header.split()[-2:] == ["expected", "delta"]
    assert any(
        line.split()[0] == "audioset_unbalanced" and line.endswith("-1912020")
        for line in printed.splitlines()
    )


def test_leakage_guard_removes_held_out_clips_from_training(built):
    out, _, printed, s, _ = built
    leak = s["stages"]["leakage"]
    assert leak["removed"] == 5
    assert leak["removed_by_overlap"] == {
        "audioset_unbalanced <- audiocaps_test/test": 2,
        "freesound <- clotho_evaluation/test": 1,
        "freesound <- fsd50k_eval/test": 1,
        "freesound <- esc50/guard": 1,  # a guard-only source, matched by its Freesound id
    }
    assert "leakage guard: 5 train samples removed" in printed
    removals = [
        json.loads(line)
        for p in glob.glob(f"{out}/rejects/manifest/*.jsonl")
        for line in Path(p).read_text().splitlines()
        if '"eval_overlap"' in line
    ]
    assert sorted(r["source_id"] for r in removals) == sorted(
        [*LEAK, FS_LEAK_CLOTHO, FS_LEAK_FSD, FS_IN_ESC50]
    )
    as_removal = next(r for r in removals if r["source_id"] == LEAK[0])
    assert as_removal["stage"] == "leakage" and as_removal["row"] == 5
    assert f"youtube:{LEAK[0]} is also in split 'test' of source 'audiocaps_test'" in as_removal["reason"]
    # what the shards hold: no origin id is both trained on and held out
    origins = defaultdict(set)
    for doc in _samples(out).values():
        train = doc["split"] in ("train", "balanced_train", "unbalanced_train")
        origins[train].update(doc["origin_ids"])
    assert origins[False] and origins[True] and not origins[True] & origins[False]
    assert {f"youtube:{y}" for y in LEAK} <= origins[False]


def test_one_sample_per_audiocaps_clip_and_clotho_splits_straight(built):
    out, *_ = built
    docs = list(_samples(out).values())
    caps = [d for d in docs if d["source"] == "audiocaps_test"]
    assert sorted(d["source_id"] for d in caps) == sorted([*LEAK, "testClip001"])
    assert all(len(d["text"]) == 5 and d["caption_kind"] == "source" for d in caps)
    split_of = {d["source_id"]: d["split"] for d in docs if d["source"].startswith("clotho")}
    assert split_of["Church bells.wav"] == "test" and split_of["Rain on a tin roof.wav"] == "valid"
    assert split_of["Distorted AM Radio noise.wav"] == "train"
    audioset = next(d for d in docs if d["source_id"] == "-0RWZT-miFs")
    assert audioset["split"] == "unbalanced_train" and audioset["tag"] == ["Animal", "Dog", "Bark"]


def test_audioset_training_clips_get_only_the_k2c_caption(built):
    out, *_ = built
    docs = {d["source_id"]: d for d in _samples(out).values() if d["source"].startswith("audioset")}
    # 3 s: K2C replaces the template caption, as LAION did for AudioSet; the template stays in
    # text_augment_all.
    k2c = docs["-0RWZT-miFs"]
    assert k2c["caption_kind"] == "k2c" and k2c["text"] == [k2c["text_augment_t5"]]
    assert k2c["text_augment_all"] == ["The sounds of animal, dog and bark.", k2c["text_augment_t5"]]
    assert "dog" in k2c["text_augment_t5"].lower()
    # 1 s: under K2C's 2 s minimum, the template caption ships; the eval split is never K2C'd.
    short = docs["--PJHxphWEs"]
    assert short["caption_kind"] == "template" and "text_augment_t5" not in short
    assert all(d["caption_kind"] == "template" for d in docs.values() if d["source"] == "audioset_eval")


def test_license_and_attribution_pass_through_to_json_and_parquet(built):
    out, *_ = built
    docs = {d["source_id"]: d for d in _samples(out).values()}
    radio = docs["Distorted AM Radio noise.wav"]
    assert radio["license"] == "http://creativecommons.org/licenses/by/3.0/"
    assert radio["attribution"].startswith("Distorted AM Radio noise.wav by José")
    assert radio["origin_ids"] == ["freesound:66083"]
    assert docs["64760"]["attribution"] == "guitar riff.wav by strummer (https://freesound.org/s/64760/)"
    assert docs["2394"]["license"] == "http://creativecommons.org/licenses/by/3.0/"
    assert docs["07070001.wav"]["license"] == "RemArc licence (BBC Sound Effects)"
    rows = {}
    for path in glob.glob(f"{out}/parquet/*/*.parquet"):
        for row in pq.read_table(
            path, columns=["source_id", "license", "attribution", "origin_ids"]
        ).to_pylist():
            rows[row["source_id"]] = row
    assert len(rows) == len(docs)
    for sid in ("Distorted AM Radio noise.wav", "64760", "2394", "07070001.wav"):
        d, r = docs[sid], rows[sid]
        assert (r["license"], r["attribution"], r["origin_ids"]) == (
            d["license"],
            d["attribution"],
            d["origin_ids"],
        )


def test_duplicates_report_lists_the_identical_files(built):
    out, _, printed, s, _ = built
    dup = s["stages"]["duplicates"]
    assert (dup["mode"], dup["groups"], dup["samples_in_groups"], dup["removed"]) == ("report", 1, 2, 0)
    assert "duplicates (report): 1 groups, 2 samples, 0 removed" in printed
    (group,) = [json.loads(line) for line in (out / "duplicates.jsonl").read_text().splitlines()]
    a, b = FACTS["duplicate_files"]
    by_source = {m["source"]: m for m in group["samples"]}
    assert set(by_source) == {"free_to_use_sounds", "sonniss"} and all(m["kept"] for m in group["samples"])
    docs = _samples(out)
    assert docs[by_source["free_to_use_sounds"]["key"]]["source_id"] == a.split("/", 1)[1]
    assert docs[by_source["sonniss"]["key"]]["source_id"] == b.split("/", 1)[1]


def test_plan_agrees_with_the_run(built):
    """The plan (metadata only, audio folders listed) predicts every count the run makes before the
    shards; what it cannot see is audio that fails later (missing or undecodable files)."""
    _, _, _, s, plan = built
    for name, src in s["sources"].items():
        p = plan["sources"][name]
        early = src["rejects_before_sharding"]
        assert p["rows"] == src["inputs"], name
        # the run's id guard and the end of guard-only sources are what the plan does not reject
        assert p["rejects_by_code"] == {
            k: v for k, v in early.items() if k not in ("eval_overlap", "guard_only")
        }
        leaked = plan["leakage"]["by_source"].get(name, 0) + early.get("guard_only", 0)
        assert p["records"] - leaked == src["samples"] + src["rejects_in_shards"], name
    assert plan["leakage"]["train_records_to_remove"] == s["stages"]["leakage"]["removed"]
    for split, info in s["splits"].items():
        assert plan["splits"][split]["shards"] == info["shards"]


def test_rerun_is_byte_identical(built, clap_data, tmp_path):
    out, *_ = built
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setenv("CLAP_DATA", str(clap_data))
        mp.setenv("K2C_MODEL", "tiny")
        assert main(["run", "--spec", SPEC, "--output", str(tmp_path), "--runner=FnApiRunner"]) == 0

    def files(root):
        return {
            os.path.relpath(p, root): Path(p).read_bytes()
            for p in glob.glob(f"{root}/**/*", recursive=True)
            if p.endswith((".tar", ".parquet", ".jsonl", "sizes.json"))
        }

    first, second = files(out), files(tmp_path)
    assert first.keys() == second.keys()
    assert "duplicates.jsonl" in first and [k for k in first if first[k] != second[k]] == []


def test_guard_sources_read_as_their_repositories_ship_them_and_never_written(built):
    out, *_ = built
    paths = {}
    for name in ("esc50", "urbansound8k"):
        lines = (out / "rejects" / "manifest" / f"{name}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["code"] for r in rows] == ["guard_only", "guard_only"], name
        paths[name] = sorted(Path(r["path"]).relative_to(Path(r["path"]).parents[1]) for r in rows)
    # UrbanSound8K's files lie in the fold folders its table names (file_pattern)
    assert paths["urbansound8k"] == [Path("fold10/7061-6-0-0.wav"), Path("fold5/100263-2-0-117.wav")]
    assert not any(d["source"] in ("esc50", "urbansound8k") for d in _samples(out).values())
