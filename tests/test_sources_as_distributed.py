"""The entries of docs/sources-as-distributed.md (the sources as they are distributed today), copied as
they are, build the right corpus from miniature copies of each download (tests/fixtures_sources.py:
LAION's Freesound tars with their metadata CSV, agkphysics/AudioSet's Parquet, a 16 kHz AudioSet
WebDataset mirror, WavCaps' JSON with its audio in a zip split by Info-ZIP and its blacklists, Clotho as
Zenodo ships it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import webdataset as wds
import yaml
from docs_text import docs_page, fenced_blocks
from fixtures_sources import (
    AS_UNBAL,
    FS_BLACKLISTED,
    FS_LEAK_CLOTHO,
    FS_NOT_IN_META,
    WAVCAPS_FS_BLACKLISTED,
    build_hub_copies,
)

from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.plan import format_plan, plan_spec
from clap_corpus.manifests.webdataset import Options as WebDatasetOptions
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.pipeline.spec.corpus import load_spec

SECTION = docs_page("sources-as-distributed.md")
BLOCKS = [yaml.safe_load(b) for b in fenced_blocks(SECTION, "yaml")]
READ_BACK = "our_last_build"  # reads a corpus this project built: run on the first run's output


def _readme_spec() -> tuple[dict, dict]:
    sources = [s for b in BLOCKS if isinstance(b, list) for s in b]
    options = {k: v for b in BLOCKS if isinstance(b, dict) for k, v in b["options"].items()}
    by_name = {s["name"]: s for s in sources}
    assert len(by_name) == len(sources)
    read_back = by_name.pop(READ_BACK)
    spec = {
        "corpus": "laion-clap-2m5",
        "options": {**options, "shard_size": 16, "store_mel": False},
        "sources": list(by_name.values()),
    }
    return spec, read_back


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory, clap_data):
    root = tmp_path_factory.mktemp("distributed")
    hub, lists = build_hub_copies(root)
    spec, read_back = _readme_spec()
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {"HUB": str(hub), "LISTS": str(lists), "CLOTHO_DIR": str(clap_data / "clotho")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        plan = plan_spec(load_spec(str(path)))
        summary = run_corpus(str(path), str(root / "out"), ["--runner=FnApiRunner"])
    return root, summary, plan, read_back


def _samples(out: Path) -> dict[str, dict]:
    docs = {}
    for tar in sorted(out.rglob("webdataset/**/*.tar")):
        for sample in wds.WebDataset(str(tar), shardshuffle=False):
            doc = json.loads(sample["json"])
            docs[f"{doc['source']}/{doc['source_id']}"] = doc
    return docs


def test_every_layout_builds_from_the_readme_entries(readme_run):
    root, s, _, _ = readme_run
    assert s["accounting_ok"] and not s["empty_sources"]
    got = {n: (v["inputs"], v["samples"]) for n, v in s["sources"].items()}
    assert got == {
        # 6 clips in train_1, train_2, test: one on WavCaps' blacklist, one Clotho's evaluation clip
        "freesound": (6, 4),
        # 3 clips + the listed one no copy has; one on WavCaps' AudioSet blacklist
        "audioset_unbalanced": (4, 2),
        "audioset_16k": (2, 2),
        # 11 clips in the split zip (one running across its two parts), one blacklisted
        "wavcaps_freesound": (11, 10),
        "clotho_evaluation": (1, 1),
    }
    codes = {n: v["rejects_before_sharding"] for n, v in s["sources"].items()}
    assert codes["freesound"] == {"excluded": 1, "eval_overlap": 1}
    assert codes["audioset_unbalanced"] == {"excluded": 1, "not_in_mirror": 1}
    assert codes["wavcaps_freesound"] == {"excluded": 1}
    docs = _samples(root / "out")
    # the split comes from LAION's folders: train_1, train_2 -> train, test -> test
    fs = {d["origin_ids"][0]: d for k, d in docs.items() if k.startswith("freesound/")}
    assert {o: d["split"] for o, d in fs.items()} == {
        "freesound:282776": "train",
        "freesound:158824": "train",
        f"freesound:{FS_NOT_IN_META}": "train",
        "freesound:77701": "test",
    }
    # license and uploader from the metadata CSV; the clip it has no row for keeps none
    first = fs["freesound:282776"]
    assert first["license"] == "http://creativecommons.org/licenses/by/3.0/"
    assert first["attribution"] == (
        "sound 282776 by user282776 (https://freesound.org/people/user282776/sounds/282776/)"
    )
    assert fs[f"freesound:{FS_NOT_IN_META}"]["attribution"] is None
    # the 16 kHz mirror: the id, the origin and the labels named from the AudioSet ontology
    wds16 = {k: d for k, d in docs.items() if k.startswith("audioset_16k/")}
    assert sorted(wds16) == ["audioset_16k/wdsaudiose2", "audioset_16k/wdsaudioset"]
    assert {tuple(d["labels"]) for d in wds16.values()} == {("Speech", "Bark")}
    assert {d["text"][0] for d in wds16.values()} == {"The sounds of speech and bark."}
    assert not [d for d in docs.values() if any("/m/" in t for t in d["text"])]
    assert len([k for k in docs if k.startswith("wavcaps_freesound/")]) == 10


def test_exclusion_lists_are_counted_everywhere(readme_run):
    root, s, plan, _ = readme_run
    ex = s["stages"]["exclude"]
    assert ex["removed"] == 3
    assert ex["removed_by_list"] == {
        "blacklist_exclude_test_ac.json": 2,
        "blacklist_exclude_ub8k_esc50_vggsound.json": 1,
    }
    assert ex["removed_by_source"] == {"audioset_unbalanced": 1, "freesound": 1, "wavcaps_freesound": 1}
    assert s["rejects_by_code"]["excluded"] == 3
    rejects = [
        json.loads(x)
        for x in (root / "out" / "rejects" / "manifest" / "freesound.jsonl").read_text().splitlines()
    ]
    (gone,) = [r for r in rejects if r["code"] == "excluded"]
    assert gone["stage"] == "exclude"
    assert (
        f"freesound:{FS_BLACKLISTED} is on the exclusion list blacklist_exclude_test_ac.json"
        in gone["reason"]
    )
    (leak,) = [r for r in rejects if r["code"] == "eval_overlap"]
    assert f"freesound:{FS_LEAK_CLOTHO}" in leak["reason"] and "clotho_evaluation" in leak["reason"]
    printed = format_report(RunSummary.from_json(s))
    assert (
        "exclusion lists: 3 samples removed (blacklist_exclude_test_ac.json 2, "
        "blacklist_exclude_ub8k_esc50_vggsound.json 1)" in printed
    )
    card = (root / "out" / "README.md").read_text()
    assert "### Exclusion lists" in card and "3 clips were left out" in card
    report = json.loads((root / "out" / "report" / "report.json").read_text())
    assert report["removals"]["exclude"] == 3
    # plan predicted the same removals
    assert plan["exclude"]["removed_by_list"] == ex["removed_by_list"]
    assert plan["sources"]["wavcaps_freesound"]["rejects_by_code"] == {"excluded": 1}
    assert f"{AS_UNBAL[2]}" in " ".join(
        json.loads(x)["reason"]
        for x in (root / "out" / "rejects" / "manifest" / "audioset_unbalanced.jsonl")
        .read_text()
        .splitlines()
    )
    assert WAVCAPS_FS_BLACKLISTED not in {d["source_id"] for d in _samples(root / "out").values()}


def test_plan_says_what_the_run_says(readme_run):
    """Coverage, join counts and rejects before sharding under the same names in plan and summary."""
    _, s, plan, _ = readme_run
    for name, src in s["sources"].items():
        p = plan["sources"][name]
        assert p["rows"] == src["inputs"], name
        early = {k: v for k, v in src["rejects_before_sharding"].items() if k != "eval_overlap"}
        assert p["rejects_by_code"] == early, name
    cov = s["sources"]["audioset_unbalanced"]["coverage"]
    assert cov == {
        "wanted": 4,
        "obtained": 3,
        "missing": 1,
        "obtained_pct": 75.0,
        "not_listed": 0,
        "samples": 2,
    }
    assert plan["sources"]["audioset_unbalanced"]["coverage"] == {
        k: v for k, v in cov.items() if k != "samples"
    }
    assert (
        s["sources"]["freesound"]["join"]
        == plan["sources"]["freesound"]["join"]
        == {
            "matched": 5,
            "unmatched": 1,
        }
    )
    line = "audioset_unbalanced: the mirror holds 3 of the 4 listed rows (75 %), 1 missing (not_in_mirror)"
    printed = format_report(RunSummary.from_json(s))
    assert line in format_plan(plan) and line in printed
    assert "freesound: the metadata table (join) has a row for 5 of 6 records" in printed


def test_our_own_shards_read_back_keep_their_ids(readme_run, tmp_path):
    root, s, _, entry = readme_run
    entry = {**entry, "audio_root": entry["audio_root"].replace("/data/clap-out", str(root / "out"))}
    spec = {"corpus": "again", "options": {"shard_size": 16, "store_mel": False}, "sources": [entry]}
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(spec))
    again = run_corpus(str(tmp_path / "again.yaml"), str(tmp_path / "out"), ["--runner=FnApiRunner"])
    train = s["splits"]["train"]["samples"]
    assert again["accounting_ok"] and again["sources"][READ_BACK]["samples"] == train
    ids = {d["source_id"] for d in _samples(tmp_path / "out").values()}
    # the clip's own id, under its source's name, not the read-back tar's train/000000/<key>
    assert {"freesound/freesound_no_overlap/train_1/0/2394", "wavcaps_freesound/180913"} <= ids


def test_readme_lists_every_webdataset_option_with_its_type():
    table = SECTION.split("| option | type | default |", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", "\n".join(line.split("|")[1] for line in table.splitlines()[1:])))
    assert named == set(WebDatasetOptions.model_fields) - set(AdapterOptions.model_fields)
