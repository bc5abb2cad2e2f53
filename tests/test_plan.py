"""Shipped specs, environment variables and adapter options in specs, and `clapcorpus plan`."""

import json
import os
from pathlib import Path

import pytest
import yaml

from clap_corpus.manifests.plan import format_plan, plan_spec
from clap_corpus.pipeline.cli.main import main
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.preflight import StartCheckError, load_checked_spec
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import SpecError, expand_env, load_spec

SPECS = Path(__file__).resolve().parents[1] / "manifests" / "specs"
SPEC_2M5 = str(SPECS / "laion_clap_2m5.yaml")
SPEC_630K = str(SPECS / "laion_audio_630k.yaml")


@pytest.fixture
def data_env(clap_data, monkeypatch):
    for var in [v for v in os.environ if v.endswith("_DIR") or v == "CLAP_DATA"]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("CLAP_DATA", str(clap_data))
    return clap_data


def test_shipped_specs_load_against_a_copy(data_env):
    spec = load_spec(SPEC_2M5)
    assert len(spec.sources) == 23 and [s.name for s in spec.sources if s.guard] == ["esc50", "urbansound8k"]
    expected = {s.name: s.expected_count for s in spec.sources if s.expected_count is not None}
    assert sum(expected.values()) == 2_541_614 and len(expected) == 14  # LAION-CLAP's ICASSP 2023 table
    audioset = spec.source("audioset_unbalanced")
    assert audioset.manifest == str(data_env / "audioset" / "unbalanced_train_segments.csv")
    assert audioset.option("class_index") == str(data_env / "audioset" / "class_labels_indices.csv")
    assert spec.source("fsd50k").option("include_splits") == ["train"]
    spec = load_spec(SPEC_630K)
    assert [s.name for s in spec.sources] == [
        "epidemic_sound",
        "free_to_use_sounds",
        "sonniss",
        "we_sound_effects",
        "bbc_sound_effects",
        "audiostock",
        "freesound",
        "paramount_motion",
    ]


def test_one_dataset_somewhere_else(data_env, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(data_env / "macs", tmp_path / "my_macs")
    monkeypatch.setenv("MACS_DIR", str(tmp_path / "my_macs"))
    assert load_spec(SPEC_2M5).source("macs").manifest == str(tmp_path / "my_macs" / "MACS.yaml")


def test_unset_variable_names_field_and_variable(monkeypatch):
    monkeypatch.delenv("CLAP_DATA", raising=False)
    monkeypatch.delenv("AUDIOSET_DIR", raising=False)
    with pytest.raises(SpecError, match=r"sources\[0\]\.manifest: environment variable CLAP_DATA is not set"):
        load_spec(SPEC_2M5)


def test_expand_env(monkeypatch):
    monkeypatch.setenv("A", "/a")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("NOPE", raising=False)
    doc = {"x": "${A}/m.csv", "y": ["${NOPE:-${A}/d}", "${EMPTY:-e}", "$A ${A:-z}"], "n": 3}
    assert expand_env(doc) == {"x": "/a/m.csv", "y": ["/a/d", "e", "$A /a"], "n": 3}
    with pytest.raises(SpecError, match=r"f\.yaml: y\[1\]: environment variable NOPE"):
        expand_env({"y": ["ok", "${NOPE}"]}, "f.yaml")


def _spec(tmp_path, source: dict, **options) -> str:
    doc = {"corpus": "c", "options": options, "sources": [{"name": "s", "audio_root": ".", **source}]}
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(doc))
    return str(p)


def test_adapter_option_paths_resolve_next_to_the_spec(tmp_path):
    (tmp_path / "meta").mkdir()
    for name in ("segs.csv", "meta/classes.csv"):
        (tmp_path / name).write_text("x\n")
    spec = load_spec(
        _spec(
            tmp_path,
            {"adapter": "audioset", "manifest": "segs.csv", "options": {"class_index": "meta/classes.csv"}},
        )
    )
    assert spec.sources[0].option("class_index") == str(tmp_path / "meta" / "classes.csv")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            {"adapter": "audioset", "manifest": "segs.csv"},
            "sources[0].options.class_index: this adapter needs it",
        ),
        (
            {"adapter": "audioset", "manifest": "segs.csv", "options": {"class_index": "gone.csv"}},
            "sources[0].options.class_index: file not found: ",
        ),
        (
            {"adapter": "clotho", "manifest": "segs.csv", "options": {"metdata": "segs.csv"}},
            "sources[0].options.metdata: unknown option",
        ),
        (
            {"adapter": "fsd50k", "manifest": "segs.csv", "options": {"include_splits": "train"}},
            "sources[0].options.include_splits: expected list",
        ),
        (
            {
                "adapter": "audioset",
                "manifest": "segs.csv",
                "options": {"class_index": "segs.csv", "file_pattern": "{id}.wav"},
            },
            "sources[0].options.file_pattern: unknown field {id} (fields: {ytid}, {start}, {end})",
        ),
        (
            {"adapter": "hf_datasets", "options": {"files": ["data/*.parquet"]}},
            "sources[0].options.files: no file matches",
        ),
        (
            {"adapter": "filenames", "options": {"folder_keywords": "yes"}},
            "options.folder_keywords: expected bool",
        ),
        ({"adapter": "audiocaps"}, "sources[0]: adapter 'audiocaps' needs a 'manifest' field"),
    ],
)
def test_wrong_adapter_options_fail_at_start(tmp_path, source, message):
    (tmp_path / "segs.csv").write_text("x\n")
    with pytest.raises(SpecError) as e:
        load_spec(_spec(tmp_path, source))
    assert str(e.value).startswith(str(tmp_path / "spec.yaml")) and message in str(e.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"duplicates": "drop"}, "options.duplicates: must be one of report, keep_first, drop_all"),
        ({"train_splits": ["Train"]}, r"options.train_splits\[0\]: split name 'Train'"),
        ({"leakage_guard": "no"}, "options.leakage_guard: expected true/false"),
    ],
)
def test_corpus_options_for_guards(tmp_path, options, message):
    with pytest.raises(SpecError, match=message):
        load_spec(_spec(tmp_path, {"adapter": "filenames"}, **options))
    ok = load_spec(
        _spec(tmp_path, {"adapter": "filenames"}, duplicates="drop_all", train_splits=["train", "dev"])
    )
    assert ok.options.duplicates == "drop_all" and ok.options.train_splits == ("train", "dev")


def test_plan_of_the_630k_spec(data_env):
    plan = plan_spec(load_spec(SPEC_630K))
    src = plan["sources"]
    assert {k: (v["rows"], v["records"], v["rejects"]) for k, v in src.items()} == {
        "epidemic_sound": (2, 2, 0),
        "free_to_use_sounds": (2, 2, 0),
        "sonniss": (2, 2, 0),
        "we_sound_effects": (1, 1, 0),
        "bbc_sound_effects": (3, 2, 1),
        "audiostock": (2, 2, 0),
        "freesound": (4, 4, 0),
        "paramount_motion": (1, 1, 0),
    }
    assert src["freesound"]["expected_delta"] == 4 - 515581
    # BBC's `secs` column gives its durations; the others use their adapter's documented mean
    assert src["bbc_sound_effects"]["durations_from_metadata"] == 2 and src["bbc_sound_effects"][
        "hours"
    ] == round(2 / 3600, 3)
    assert src["sonniss"]["hours"] == round(2 * 10.0 / 3600, 3)
    assert sum(s["records"] for s in plan["splits"].values()) == 16  # hash split, nothing held out
    assert plan["leakage"]["overlapping_train_records"] == 0
    assert plan["worker_core_hours"] == round(plan["hours"] / 200.0, 2)
    text = format_plan(plan)
    assert "no train record shares an origin id" in text and "worker-core-hours" in text


def test_plan_counts_repeats_and_honours_mean_duration(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "classes.csv").write_text('index,mid,display_name\n0,/m/a,"A"\n')
    rows = "".join(f'{y}, 0.000, 4.000, "/m/a"\n' for y in ["aaaaaaaaaaa", "bbbbbbbbbbb", "aaaaaaaaaaa"])
    (tmp_path / "balanced_train_segments.csv").write_text(
        "# c\n# n\n# YTID, start_seconds, end_seconds, positive_labels\n" + rows
    )
    (tmp_path / "m.jsonl").write_text('{"audio": "x.wav", "captions": ["c"], "split": "test"}\n')
    doc = {
        "corpus": "c",
        "options": {"shard_size": 2},
        "sources": [
            {
                "name": "as",
                "adapter": "audioset",
                "manifest": "balanced_train_segments.csv",
                "audio_root": "audio",
                "options": {"class_index": "classes.csv"},
            },
            {"name": "g", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "audio"},
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    plan = plan_spec(load_spec(str(tmp_path / "spec.yaml")))
    assert plan["repeated_ids"] == 1 and plan["splits"]["balanced_train"] == {
        "records": 3,
        "hours": 0.003,
        "shards": 2,
    }
    assert (
        plan["sources"]["as"]["hours"] == round(12 / 3600, 3)
        and plan["sources"]["g"]["assumed_duration_s"] == 10.0
    )
    doc["sources"][1]["adapter"] = "captionfiles"
    doc["sources"][1]["options"] = {
        "mean_duration_s": 60,
        "file_column": "audio",
        "caption_columns": ["captions"],
        "split_column": "split",
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    plan = plan_spec(load_spec(str(tmp_path / "spec.yaml")))
    assert plan["sources"]["g"]["hours"] == round(60 / 3600, 3) and plan["splits"]["test"]["records"] == 1


def test_plan_command(data_env, capsys, monkeypatch):
    monkeypatch.setenv("K2C_MODEL", "tiny")  # the spec's K2C (AudioSet) needs a model, as `run` does
    assert main(["plan", "--spec", SPEC_2M5, "--throughput", "100"]) == 0
    out = capsys.readouterr().out
    assert "leakage guard will remove 5 train records (audioset_unbalanced 2, freesound 3)" in out
    assert "at 100x realtime per worker core" in out
    # the start check ran as for `clapcorpus run`: one figure per source, found / sampled naming audio
    assert "start check (audio found / sampled rows naming audio): audioset_unbalanced 6/7," in out
    line = next(x for x in out.splitlines() if x.split()[:1] == ["audioset_unbalanced"])
    assert line.split()[1:7] == ["audioset", "11", "4", "7", "1912024", "-1912017"]
    assert main(["plan", "--spec", SPEC_2M5, "--json", "--check-audio"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["sources"]["audioset_unbalanced"]["rejects_by_code"]["missing_audio"] == 1
    assert plan["splits"]["unbalanced_train"]["records"] == 4


def test_plan_command_spec_error(monkeypatch, capsys):
    monkeypatch.delenv("CLAP_DATA", raising=False)
    monkeypatch.delenv("AUDIOSET_DIR", raising=False)
    assert main(["plan", "--spec", SPEC_2M5]) == 2
    assert "environment variable CLAP_DATA is not set" in capsys.readouterr().err


def test_every_wrong_option_of_a_source_is_named(tmp_path):
    with pytest.raises(SpecError) as e:
        load_spec(
            _spec(
                tmp_path,
                {
                    "adapter": "webdataset",
                    "options": {"caption_fields": "text", "tag_role": 3, "json_extension": 5, "bogus": 1},
                },
            )
        )
    lines = str(e.value).splitlines()
    assert [line.split(": ", 2)[1] for line in lines] == [
        "sources[0].options.bogus",
        "sources[0].options.json_extension",
        "sources[0].options.caption_fields",
        "sources[0].options.tag_role",
    ]


def _k2c_spec(tmp_path, overrides: dict) -> str:
    (tmp_path / "a").mkdir(exist_ok=True)
    (tmp_path / "a" / "Dog_bark.wav").write_bytes(
        synth.encode_audio(synth.tone(330.0, 1.0, 16000), 16000, "wav")
    )
    k2c = {"model": "nobody/no-such-k2t-model", "preset": "k2t", "mode": "off", "sources": overrides}
    return _spec(
        tmp_path, {"adapter": "filenames", "audio_root": "a"}, k2c=k2c, shard_size=4, store_mel=False
    )


def test_plan_checks_the_k2c_model_a_source_needs(tmp_path, capsys):
    """mode "off" with a per-source override still needs the model: plan says so as run would; with
    no source using K2C, neither needs one."""
    spec = _k2c_spec(tmp_path, {"s": "replace"})
    assert main(["plan", "--spec", spec]) == 2
    err = capsys.readouterr().err
    assert "cannot load the keyword-to-caption model 'nobody/no-such-k2t-model'" in err
    assert "keyword-to-caption writes captions for s: options.k2c.mode is 'off', options.k2c.sources" in err
    spec = _k2c_spec(tmp_path, {})
    assert main(["plan", "--spec", spec]) == 0
    s = run_corpus(spec, str(tmp_path / "out"), ["--runner=FnApiRunner"])
    assert s["samples"] == 1 and "k2c" not in s["stages"]


def test_start_check_says_why_no_row_names_audio(tmp_path):
    missing = tmp_path / "hub" / "AudioSet"
    spec = _spec(tmp_path, {"adapter": "hf_datasets", "audio_root": str(missing)})
    with pytest.raises(StartCheckError) as e:
        load_checked_spec(spec)
    assert f"e.g. {missing}: unreadable_metadata: the audio root {missing} does not exist" in str(e.value)
