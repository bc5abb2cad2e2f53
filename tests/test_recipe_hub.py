"""The 2.5 M recipe on today's public copies: a small copy of each (tests/fixtures_sources.py), the
shipped spec, `plan` per source."""

import json
import os
from pathlib import Path

import pytest
import yaml
from fixtures_sources import FS_BLACKLISTED, build_hub_copies

from clap_corpus.manifests.plan import format_plan, plan_spec
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.pipeline.spec.corpus import load_spec

SPEC = str(Path(__file__).resolve().parents[1] / "manifests" / "specs" / "laion_clap_2m5_hub.yaml")


@pytest.fixture
def hub_env(tmp_path, clap_data, monkeypatch):
    hub, lists = build_hub_copies(tmp_path)
    for var in [v for v in os.environ if v.endswith("_DIR") or v in ("CLAP_DATA", "HUB", "LISTS")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HUB", str(hub))
    monkeypatch.setenv("LISTS", str(lists))
    monkeypatch.setenv("FSD50K_DIR", str(clap_data / "fsd50k"))
    monkeypatch.setenv("K2C_MODEL", "tiny")
    return tmp_path


def test_plan_says_per_source_what_is_obtained_and_missing(hub_env):
    spec = load_spec(SPEC)
    expected = {s.name: s.expected_count for s in spec.sources if s.expected_count is not None}
    assert len(expected) == 6  # the sources of LAION's table with a public copy
    plan = plan_spec(spec)
    coverage = {n: s["coverage"] for n, s in plan["sources"].items() if "coverage" in s}
    assert {n: (c["wanted"], c["obtained"], c["missing"]) for n, c in coverage.items()} == {
        "audioset_unbalanced": (4, 3, 1),
        "audioset_eval": (1, 1, 0),
        "audiocaps_train": (2, 1, 1),
        "audiocaps_val": (1, 1, 0),
        "audiocaps_test": (1, 1, 0),
        "clotho_development": (1, 1, 0),
        "clotho_validation": (1, 1, 0),
        "clotho_evaluation": (1, 1, 0),
    }
    src = plan["sources"]
    # LAION's tars: train_1 + train_2 in `freesound` (one on WavCaps' blacklist), test in freesound_test
    assert (src["freesound"]["rows"], src["freesound"]["records"]) == (5, 4)
    assert src["freesound"]["rejects_by_code"] == {"excluded": 1}
    assert src["freesound"]["records_by_split"] == {"train": 4}
    assert src["freesound_test"]["records_by_split"] == {"test": 1}
    assert src["freesound"]["join"] == {"matched": 4, "unmatched": 1}
    assert src["bbc_sound_effects"]["records"] == 1
    assert plan["exclude"]["removed_by_source"] == {"audioset_unbalanced": 1, "freesound": 1}
    text = format_plan(plan)
    assert (
        "audioset_unbalanced: the mirror holds 3 of the 4 listed rows (75 %), 1 missing (not_in_mirror)"
        in text
    )
    assert "exclusion lists will remove 2 records" in text


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
    assert got["audioset_unbalanced"] == (4, 2) and got["audiocaps_train"] == (2, 1)
    assert got["freesound"] == (5, 4) and got["freesound_test"] == (1, 1)
    assert got["bbc_sound_effects"] == (1, 1)
    assert s["sources"]["audioset_unbalanced"]["coverage"]["obtained_pct"] == 75.0
    assert s["stages"]["exclude"]["removed"] == 2
    rejects = (hub_env / "out" / "rejects" / "manifest" / "freesound.jsonl").read_text()
    assert f"freesound:{FS_BLACKLISTED} is on the exclusion list" in rejects
    card = (hub_env / "out" / "README.md").read_text()
    assert "| audioset_unbalanced | 4 | 3 | 1 | 75 % | 0 | 2 | 1,912,024 |" in card
    # the Freesound clips' licenses come from LAION's CSV (one clip has no row there)
    assert "http://creativecommons.org/licenses/by/3.0/ (3)" in card
    assert "### Exclusion lists" in card
    printed = format_report(RunSummary.from_json(s))
    assert "audioset_unbalanced: the mirror holds 3 of the 4 listed rows" in printed
    docs = [
        json.loads(x)
        for x in (hub_env / "out" / "rejects" / "manifest" / "freesound.jsonl").read_text().splitlines()
    ]
    assert [d["code"] for d in docs] == ["excluded"]
