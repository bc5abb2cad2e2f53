"""The K2C stage with the embedded tiny T5: batching, RunInference on the local runner, dedup fan-out,
fallbacks through the stage, and the failure at start when the model cannot be loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
from helpers.records import captioned, make_record

from clap_corpus.core.errors import ConfigError
from clap_corpus.core.records import Record
from clap_corpus.k2c.apply import plan
from clap_corpus.k2c.config import K2CConfig, parse_k2c
from clap_corpus.k2c.debias import contains_gendered
from clap_corpus.k2c.handler import ModelUnavailable, check_captioner, load_captioner
from clap_corpus.k2c.keywords import keyword_set
from clap_corpus.k2c.outcomes import FALLBACKS, Outcome
from clap_corpus.k2c.postprocess import finish
from clap_corpus.k2c.presets import PRESETS
from clap_corpus.k2c.stage import K2CStage, apply_result
from clap_corpus.pipeline.demo import synth

# Keyword sets of different token lengths, in the vocabulary of the embedded model.
SETS = [
    ("dog", "bark"),
    ("rain", "thunder"),
    ("tone", "low", "steady"),
    ("noise", "hiss", "bright"),
    ("car", "horn", "distant", "engine"),
    ("piano",),
    ("clicks", "slow", "rhythm"),
    ("bird", "wind", "leaves", "quiet", "rustle"),
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Nothing in these tests may reach for a model hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _cfg(**kw) -> K2CConfig:
    cfg = parse_k2c({"model": "tiny"}, sources=["s", "t"])
    assert cfg is not None
    return replace(cfg, **kw)


@pytest.fixture(scope="module")
def captioner():
    return load_captioner(_cfg())


def _inputs(sets) -> list[str]:
    return [PRESETS["k2t"].format(keyword_set((), s).keywords) for s in sets]


@pytest.mark.slow
def test_batching_changes_nothing(captioner):
    inputs = _inputs(SETS)
    lengths = {len(captioner.tokenizer(x)["input_ids"]) for x in inputs}
    assert 3 <= len(lengths) < len(inputs)  # mixed lengths, and some length shared by several inputs
    together = captioner.generate(inputs)
    alone = [captioner.generate([x])[0] for x in inputs]
    reversed_order = captioner.generate(inputs[::-1])[::-1]
    assert together == alone == reversed_order
    assert all(isinstance(t, str) and t for t in together)


def _corpus() -> list[Record]:
    """40 records over the 8 sets (varied order and case), plus the awkward ones."""
    records = []
    for i in range(40):
        s = list(SETS[i % len(SETS)])
        if i % 2:
            s = [w.upper() if len(w) > 3 else w for w in reversed(s)]
        records.append(
            captioned(make_record(f"s_r{i:03d}_x", labels=tuple(s[:1]), keywords=tuple(s[1:])))
            if i % 3
            else captioned(make_record(f"s_r{i:03d}_x", keywords=tuple(s)))
        )
    records += [
        # has a caption: not K2C's business
        captioned(make_record("s_r100_x", captions=("A dog barks.",), keywords=("dog",))),
        # nothing Latin: template kept
        captioned(make_record("s_r101_x", labels=("犬",), keywords=("猫", "Кошка"))),
        captioned(make_record("s_r102_x", keywords=("...", "|||"))),  # nothing left after normalization
        # thousands: cut at 10
        captioned(make_record("s_r103_x", keywords=(*[f"tag{i}" for i in range(3000)], "dog"))),
        # pipes, periods, duplicates
        captioned(make_record("s_r104_x", keywords=("rain|thunder", "thunder.", "rain.", "RAIN"))),
        # source with mode off
        captioned(make_record("t_r105_x", source="t", labels=("Dog",), keywords=("bark",))),
    ]
    return records


def _run_stage(records: list[Record], cfg: K2CConfig, out_dir: Path) -> tuple[dict[str, dict], dict]:
    out_dir.mkdir(parents=True, exist_ok=True)

    def dump(element, prefix):
        name = element.key if isinstance(element, Record) else element[0]
        body = asdict(element) if isinstance(element, Record) else element[1]
        (out_dir / f"{prefix}-{name}.json").write_text(json.dumps(body, default=list))

    with beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"])) as p:
        out = p | beam.Create(records) | K2CStage(cfg)
        _ = out.records | "DumpRecords" >> beam.Map(dump, "rec")
        _ = out.report | "DumpReport" >> beam.Map(dump, "report")
    recs = {json.loads(f.read_text())["key"]: json.loads(f.read_text()) for f in out_dir.glob("rec-*.json")}
    return recs, json.loads((out_dir / "report-k2c.json").read_text())


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory):
    records = _corpus()
    cfg = _cfg(sources=(("t", "off"),), max_batch_size=4)
    dedup = _run_stage(records, cfg, tmp_path_factory.mktemp("dedup"))
    nodedup = _run_stage(records, replace(cfg, dedup=False), tmp_path_factory.mktemp("nodedup"))
    return records, cfg, dedup, nodedup


def test_stage_dedup_fan_out_counts(stage_runs):
    records, _, (recs, report), _ = stage_runs
    assert sorted(recs) == sorted(r.key for r in records)  # nothing dropped, nothing added
    distinct = {keyword_set(r.labels, r.keywords).key for r in records[:40]}
    distinct |= {keyword_set((), records[43].keywords).key, keyword_set((), records[44].keywords).key}
    assert len(distinct) == 10
    assert report["model_inputs"] == len(distinct)
    assert report["through_model"] == 42 and report["dedup_ratio"] == round(42 / 10, 4)
    assert report["not_template"] == 1 and report["mode_off"] == 1
    assert report["fallbacks"].get("non_latin") == 1 and report["fallbacks"].get("no_keywords") == 1
    assert report["generated"] + sum(report["fallbacks"].values()) == report["eligible"] == 44
    assert report["truncated_keyword_lists"] == 1 and report["records_with_non_latin_keywords_dropped"] == 1
    assert report["records"] == len(records)
    # one caption per keyword set, fanned out to every record that has the set
    by_set: dict[str, set] = {}
    for r in records[:40]:
        by_set.setdefault(keyword_set(r.labels, r.keywords).key, set()).add(recs[r.key]["k2c_caption"])
    assert all(len(c) == 1 for c in by_set.values())


def test_stage_dedup_changes_no_output(stage_runs):
    _, _, (recs, _), (recs_nodedup, report_nodedup) = stage_runs
    assert report_nodedup["model_inputs"] == report_nodedup["through_model"] == 42
    assert recs == recs_nodedup


@pytest.mark.slow
def test_stage_equals_each_record_through_the_model_alone(stage_runs, captioner):
    """The PTransform (distinct sets, batched RunInference, side input fan-out) gives every record what
    its own keyword set, generated alone, gives it; the report counts the same outcomes."""
    records, cfg, _, _ = stage_runs
    expected: list[Record] = []
    outcomes: Counter[str] = Counter()
    for r in records:
        p = plan(r, cfg)
        outcome = p.outcome
        if outcome is Outcome.TODO:
            assert p.keywords is not None
            (raw,) = captioner.generate([PRESETS[cfg.preset].format(p.keywords.keywords)])
            result = finish(raw, p.keywords.keywords, max_chars=cfg.max_caption_chars, use_debias=cfg.debias)
            r, outcome = apply_result(r, result, cfg)
        expected.append(r)
        outcomes[outcome] += 1
    fallbacks = {o.value: n for o, n in outcomes.items() if o in FALLBACKS}
    assert fallbacks["non_latin"] == fallbacks["no_keywords"] == 1 and outcomes[Outcome.GENERATED] >= 38

    def counted(report: tuple[str, dict]) -> tuple:
        name, doc = report
        return name, doc["generated"], doc["fallbacks"], doc["not_template"], doc["mode_off"]

    with test_pipeline.TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(records) | K2CStage(cfg)
        assert_that(out.records, equal_to(expected))
        assert_that(
            out.report | beam.Map(counted),
            equal_to([("k2c", outcomes[Outcome.GENERATED], fallbacks, 1, 1)]),
            label="CheckReport",
        )


def test_stage_records_fields(stage_runs):
    records, _, (recs, report), _ = stage_runs
    given = {r.key: r for r in records}
    for key, r in recs.items():
        src = given[key]
        if r["k2c_caption"] is None:
            assert r["text"] == list(src.text) and r["caption_kind"] == src.caption_kind
            continue
        cap = r["k2c_caption"]
        assert r["text"] == list(src.text) and r["caption_kind"] == "mixed"  # join (the default)
        assert cap not in r["text"]
        assert r["k2c_min_seconds"] == 2.0
        assert cap[0].isupper() and cap.endswith(".") and not cap.endswith("..") and "  " not in cap
        assert not contains_gendered(cap)
    assert recs[records[41].key]["k2c_caption"] is None  # non-Latin
    assert recs[records[45].key]["k2c_caption"] is None  # mode off for source t
    assert recs[records[40].key]["text"] == ["A dog barks."]
    assert report["generated"] == sum(1 for r in recs.values() if r["k2c_caption"] is not None) >= 38


def test_replace_mode(captioner, tmp_path):
    records = [
        captioned(make_record(f"s_r{i:03d}_x", labels=s[:1], keywords=s[1:])) for i, s in enumerate(SETS[:3])
    ]
    recs, report = _run_stage(records, _cfg(mode="replace", large_model=False), tmp_path)
    for r in records:
        out = recs[r.key]
        assert out["caption_kind"] == "k2c" and out["text"] == [out["k2c_caption"]]
    assert report["modes"] == {"default": "replace"} and report["generated"] == 3


def test_missing_local_model_fails_with_instructions(tmp_path):
    cfg = parse_k2c({"model": str(tmp_path / "nowhere"), "preset": "k2t"}, sources=[])
    with pytest.raises(ModelUnavailable) as e:
        load_captioner(cfg, "spec.yaml")
    msg = str(e.value)
    # a ConfigError: the command line prints it as a spec error and exits 2, no traceback
    assert isinstance(e.value, ConfigError) and msg.startswith("spec.yaml: options.k2c.model: cannot load")
    assert "does not exist" in msg and "options.k2c.model: tiny" in msg and "save_pretrained" in msg


@pytest.mark.parametrize("check", [load_captioner, check_captioner])
def test_uncached_hub_model_fails_without_network(tmp_path, monkeypatch, check):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    cfg = parse_k2c({"model": "gagan3012/k2t-base"}, sources=[])
    with pytest.raises(ModelUnavailable) as e:
        check(cfg)
    msg = str(e.value)
    assert "cannot load the keyword-to-caption model 'gagan3012/k2t-base'" in msg
    assert "hf download gagan3012/k2t-base" in msg and "download: true" in msg


def _tiny_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "k2c-model"
    shutil.copytree(Path(_cfg().model_path), folder)
    return folder


def test_the_launch_check_wants_the_weights_without_loading_them(tmp_path):
    folder = _tiny_copy(tmp_path)
    cfg = parse_k2c({"model": str(folder), "preset": "k2t"}, sources=[])
    check_captioner(cfg)  # all there
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailable, match="no weights"):
        check_captioner(cfg, "spec.yaml")


def test_weights_load_only_when_a_record_needs_a_caption(tmp_path):
    """Weights the model cannot load: a run whose records all have captions never notices them."""
    folder = _tiny_copy(tmp_path)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file" * 100)
    cfg = replace(_cfg(), model=str(folder), model_path=str(folder), is_local=True)
    with pytest.raises(Exception):  # noqa: B017 - whichever error transformers raises for these bytes
        load_captioner(cfg)
    records = [
        captioned(make_record(f"s_r{i:03d}_x", captions=(f"A dog barks {i} times.",), keywords=("dog",)))
        for i in range(5)
    ]
    recs, report = _run_stage(records, cfg, tmp_path / "out")
    assert len(recs) == 5 and report["generated"] == 0 and report["not_template"] == 5


def test_cli_run_fails_at_start_naming_the_fix(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "labels": ["Dog"]}) + "\n")
    # the audio exists, so the start check passes and the model is what the run stops on
    (src / "a.wav").write_bytes(synth.encode_audio(synth.tone(440.0, 1.0, 16_000), 16_000, "wav"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "corpus: c\noptions:\n  k2c: {model: ./no_such_model, preset: k2t}\n"
        f"sources:\n  - {{name: s, adapter: generic, manifest: {src}/m.jsonl, audio_root: {src}}}\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clap_corpus.pipeline",
            "run",
            "--spec",
            str(spec),
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "spec error" in proc.stderr and "options.k2c.model: cannot load" in proc.stderr
    assert "Provide it in one of these ways" in proc.stderr
    assert not (tmp_path / "out").exists()  # failed before any worker wrote anything
