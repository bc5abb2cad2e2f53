"""The run report, the dataset card and progress, on a real build (K2C included) read back independently."""

from __future__ import annotations

import copy
import io
import json
import os
from collections import Counter
from pathlib import Path

import apache_beam as beam
import datasets
import numpy as np
import pandas as pd
import pytest
import yaml
from apache_beam.metrics.metric import MetricsFilter
from PIL import Image

from clap_corpus.core.layout import Layout
from clap_corpus.pipeline.cli.main import main as cli_main
from clap_corpus.pipeline.launch.progress import ProgressMonitor, format_duration
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.outputs.card import hf_license, render_card, size_category
from clap_corpus.pipeline.outputs.plan import plan_doc
from clap_corpus.pipeline.outputs.report import build_report
from clap_corpus.pipeline.outputs.report_html import render_html
from clap_corpus.pipeline.outputs.report_plots import render_plots
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.pipeline.spec.beam_options import pipeline_options
from clap_corpus.pipeline.spec.corpus import load_spec
from clap_corpus.pipeline.stages.graph import BuildCorpus
from clap_corpus.transforms import storage
from clap_corpus.transforms.shards import CAPTION_WORD_EDGES, DURATION_EDGES_S

RUNNER = ["--runner=FnApiRunner"]
N_CLIPS = 10


@pytest.fixture(scope="module")
def built(small_demo):
    """The session's small demo build (tests/conftest.py), read only: (spec, out, summary, its rows)."""
    spec, out, summary = small_demo.spec, small_demo.out, small_demo.summary
    assert summary["samples"] == N_CLIPS
    frames = [pd.read_parquet(p) for p in sorted(Path(out, "parquet").rglob("*.parquet"))]
    return spec, out, summary, pd.concat(frames, ignore_index=True)


def _report(out: str) -> dict:
    return json.loads(Path(out, "report", "report.json").read_text())


def test_report_numbers_match_the_shards(built):
    _, out, summary, df = built
    r = _report(out)
    assert r["totals"]["samples"] == len(df) == N_CLIPS and r["totals"]["accounting_ok"]
    # Histograms, recomputed here from the Parquet rows with numpy on the same edges.
    edges = np.array([*DURATION_EDGES_S, np.inf])
    assert r["duration_histogram"]["counts"] == np.histogram(df["duration"], edges)[0].tolist()
    words = [len(t.split()) for texts in df["text"] for t in texts]
    assert (
        r["caption_length_histogram"]["counts"]
        == np.histogram(words, [*CAPTION_WORD_EDGES, np.inf])[0].tolist()
    )
    assert r["caption_kinds"] == dict(Counter(df["caption_kind"]))
    # K2C share: the samples that ship a generated caption.
    k2c = int(df["text_augment_t5"].notna().sum())
    assert k2c > 0 and r["k2c"]["captions"] == k2c == summary["k2c_captions"]
    assert r["k2c"]["share_of_samples"] == pytest.approx(k2c / len(df))
    assert r["k2c"]["stage"] == summary["stages"]["k2c"]
    for name, src in r["sources"].items():
        rows = df[df["source"] == name]
        assert src["samples"] == len(rows)
        assert src["licenses"] == dict(Counter(rows["license"].fillna("unknown")))
        assert src["hours"] == pytest.approx(rows["duration"].sum() / 3600, abs=1e-4)
    assert r["rejects_by_code"] == summary["rejects_by_code"] and sum(r["rejects_by_code"].values()) == 7
    assert set(r["stages"]) == set(summary["stages"])
    assert r["removals"] == {k: v["removed"] for k, v in summary["stages"].items() if "removed" in v}
    t = r["throughput"]
    assert t["wall_seconds"] == summary["wall_seconds"] > 0
    assert t["samples_per_second"] == round(N_CLIPS / t["wall_seconds"], 3)  # as rounded for the page
    assert t["audio_hours_per_wall_hour"] == pytest.approx(
        r["totals"]["hours"] * 3600 / t["wall_seconds"], rel=1e-3
    )
    assert (
        t["shards_built"] == sum(s["shards"] for s in summary["splits"].values()) and t["shard_seconds"] > 0
    )


def test_report_page_and_plots(built):
    _, out, _, _ = built
    r = _report(out)
    page = Path(out, "report", "index.html").read_text()
    assert r["plots"] == sorted(
        ["sources.png", "durations.png", "caption_lengths.png", "caption_kinds.png", "rejects.png"]
    )
    for name in r["plots"]:
        assert f'src="{name}"' in page
        with Image.open(Path(out, "report", name)) as img:
            assert img.format == "PNG" and img.width >= 500 and img.height >= 150
    for text in (
        "synthetic",
        "Accounting",
        "holds",
        "Keyword-to-caption (K2C)",
        "duplicates",
        "leakage",
        "Throughput",
        "missing_file",
    ):
        assert text in page, text


def test_plots_are_deterministic_and_stages_render_generically(built):
    _, _, summary, _ = built
    r = build_report(RunSummary.from_json(summary))
    assert render_plots(r) == render_plots(copy.deepcopy(r))
    s = copy.deepcopy(summary)
    s["stages"]["duplicates"] = {"removed": 3, "groups": {"by_source": {"synthetic": 2}}, "<b>": "x&y"}
    s["stages"]["audio_tags"] = {"kept": [1, 2, 3], "long": list(range(20))}
    r = build_report(RunSummary.from_json(s))
    page = render_html(r, render_plots(r))
    assert r["removals"]["duplicates"] == 3
    assert "groups.by_source.synthetic" in page and "[20 items]" in page and "1, 2, 3" in page
    assert "<b>" not in page and "&lt;b&gt;" in page and "x&amp;y" in page


def test_dataset_card_front_matter_and_load_dataset(built, tmp_path):
    _, out, summary, df = built
    text = Path(out, "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] == ["cc0-1.0"] and front["size_categories"] == ["n<1K"]
    assert {"audio-classification", "zero-shot-classification"} <= set(front["task_categories"])
    (config,) = front["configs"]
    assert next(f["split"] for f in config["data_files"]) == "train"
    assert "| synthetic | 10 |" in text and "CC0-1.0 (10)" in text
    ds = datasets.load_dataset(out, cache_dir=str(tmp_path / "hf"))
    assert {k: v.num_rows for k, v in ds.items()} == {k: v["samples"] for k, v in summary["splits"].items()}
    assert ds["train"].features["audio"] == datasets.Audio(sampling_rate=48000)
    assert set(ds["train"]["key"]) == set(df[df["split"] == "train"]["key"])
    assert render_card(RunSummary.from_json(summary)) == text  # the same summary gives the same card


@pytest.mark.parametrize(
    ("text", "hub_id"),
    [
        ("CC0-1.0", "cc0-1.0"),
        ("http://creativecommons.org/publicdomain/zero/1.0/", "cc0-1.0"),
        ("Creative Commons 0", "cc0-1.0"),
        ("https://creativecommons.org/licenses/by/4.0/", "cc-by-4.0"),
        ("http://creativecommons.org/licenses/by-nc/3.0/", "cc-by-nc-3.0"),
        ("CC BY 4.0", "cc-by-4.0"),
        ("CC-BY-NC-SA-4.0", "cc-by-nc-sa-4.0"),
        ("MIT", "mit"),
        ("Sampling+", "other"),
        ("http://creativecommons.org/licenses/sampling+/1.0/", "other"),
        (None, "unknown"),
        ("", "unknown"),
    ],
)
def test_licenses_map_to_hub_ids(text, hub_id):
    assert hf_license(text) == hub_id


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 2_541_614)] == ["n<1K", "n<1K", "1K<n<10K", "1M<n<10M"]


def test_beam_counters_carry_the_progress_figures(built, tmp_path):
    """On Dataflow the progress figures are these counters (namespace clapcorpus) on the job page."""
    spec_path, _, summary, _ = built
    spec = load_spec(spec_path)
    p = beam.Pipeline(options=pipeline_options(RUNNER))
    _ = p | BuildCorpus(spec, str(tmp_path))
    result = p.run()
    result.wait_until_finish()
    got = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("clapcorpus"))["counters"]
    }
    assert got["samples"] == summary["samples"]
    assert got["planned_records"] == summary["samples"] + sum(
        s["rejects"] for s in summary["splits"].values()
    )
    assert got["shards_done"] == sum(s["shards"] for s in summary["splits"].values())
    assert got["audio_milliseconds"] == pytest.approx(summary["hours"] * 3_600_000, abs=N_CLIPS + 400)


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_of_a_finished_run(built):
    spec_path, out, summary, _ = built
    spec = load_spec(spec_path)
    clock = _Clock()
    monitor = ProgressMonitor(Layout(out, spec.corpus), spec.fingerprint(), stream=io.StringIO(), clock=clock)
    clock.t = 10.0
    p = monitor.poll()
    shards = sum(s["shards"] for s in summary["splits"].values())
    assert p.planned_records == p.records_done and p.fraction == 1.0
    assert p.samples == summary["samples"] and p.shards_done == p.planned_shards == shards
    assert p.audio_seconds == pytest.approx(summary["hours"] * 3600, abs=0.4)  # hours has 4 decimals
    assert p.eta_s == 0.0 or p.rate == 0.0
    plan = json.loads(Path(out, "plan.json").read_text())
    assert plan == plan_doc(plan["records_by_split"], spec.fingerprint(), spec.options.shard_size)


def _write_stats(layout: Layout, split: str, shard: str, samples: int, rejects: int) -> None:
    doc = {"samples": samples, "rejects": rejects, "audio_seconds_by_source": {"s": 10.0 * samples}}
    storage.write_bytes_atomic(layout.stats_path(split, shard), json.dumps(doc).encode())


def test_progress_line_rate_eta_and_log_friendly_output(tmp_path):
    layout = Layout(str(tmp_path), "c")
    clock, log = _Clock(), io.StringIO()
    monitor = ProgressMonitor(layout, "fp", stream=log, plain_interval_s=60.0, clock=clock)
    monitor.poll()  # what start() does first: nothing there yet
    monitor.tick()
    assert "no shard plan yet" in log.getvalue()
    storage.write_bytes_atomic(layout.plan_path(), json.dumps(plan_doc({"train": 100}, "fp", 10)).encode())
    _write_stats(layout, "train", "000000", 9, 1)
    _write_stats(layout, "train", "000011", 10, 0)  # not in the plan (10 shards): a stale file
    clock.t = 5.0
    p = monitor.poll()
    assert (p.records_done, p.planned_records, p.shards_done, p.planned_shards) == (10, 100, 1, 10)
    assert p.rate == pytest.approx(2.0) and p.eta_s == pytest.approx(45.0)
    assert "10/100 records (10.0%)" in p.line() and "ETA 45s" in p.line()
    for i, t in enumerate((6.0, 7.0, 30.0), start=1):  # changed lines, within a minute: not printed
        clock.t = t
        _write_stats(layout, "train", f"{i:06d}", 10, 0)
        monitor.tick()
    assert log.getvalue().count("\n") == 1 and "\r" not in log.getvalue()
    clock.t = 61.0
    monitor.tick()
    assert log.getvalue().count("\n") == 2
    monitor.tick()  # same line again: nothing
    assert log.getvalue().count("\n") == 2
    monitor.stop()  # the last word is always printed
    assert log.getvalue().count("\n") == 3


def test_progress_on_a_terminal_rewrites_one_line(tmp_path):
    layout = Layout(str(tmp_path), "c")
    clock, tty = _Clock(), _Tty()
    monitor = ProgressMonitor(layout, "fp", stream=tty, clock=clock)
    storage.write_bytes_atomic(layout.plan_path(), json.dumps(plan_doc({"train": 20}, "fp", 10)).encode())
    for t in (1.0, 2.0, 3.0):
        clock.t = t
        monitor.tick()
    assert tty.getvalue().count("\r") == 3 and "\n" not in tty.getvalue()
    monitor.stop()
    assert tty.getvalue().endswith("\n")


def test_a_plan_from_another_spec_is_ignored(tmp_path):
    layout = Layout(str(tmp_path), "c")
    storage.write_bytes_atomic(layout.plan_path(), json.dumps(plan_doc({"train": 20}, "other", 10)).encode())
    assert ProgressMonitor(layout, "fp", stream=io.StringIO()).poll().planned_records is None


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.4, 61, 3600 * 2 + 5)] == ["0s", "59s", "1m01s", "2h00m05s"]


def test_run_with_progress_and_the_report_command(built, tmp_path, capsys):
    spec_path, _, _, _ = built
    out = str(tmp_path / "out")
    summary = run_corpus(spec_path, out, RUNNER, progress=True)
    err = capsys.readouterr().err
    assert f"{summary['samples']:,} samples" in err and err.count("progress: ") <= 3
    for name in ("index.html", "report.json"):
        os.remove(Path(out, "report", name))
    stale = Path(out, "report", "audio", "src_from-an-earlier-run_0000000000.flac")
    stale.write_bytes(b"fLaC")
    assert cli_main(["report", "--output", out]) == 0
    assert not stale.exists() and any(Path(out, "report", "audio").iterdir())
    assert Path(out, "report", "index.html").exists() and Path(out, "README.md").exists()
    assert cli_main(["report", "--output", str(tmp_path / "nothing")]) == 2


def test_report_shows_examples_inputs_hours_and_example_rejects(built):
    """What a person opens the report for, each figure checked against the shards read independently."""
    _, out, summary, df = built
    r = _report(out)
    page = Path(out, "report", "index.html").read_text()
    # inputs by codec, channels and original rate: the Parquet rows' own fields
    for name, column in (
        ("input_codecs", "original_codec"),
        ("input_channels", "original_channels"),
        ("input_sample_rates", "original_sample_rate"),
    ):
        assert r["inputs"][name] == {str(k): v for k, v in Counter(df[column]).items()}
    assert len(r["inputs"]["input_codecs"]) > 2  # the demo mixes codecs: the breakdown says something
    # hours per split
    for split, doc in r["splits"].items():
        assert doc["hours"] == pytest.approx(df[df["split"] == split]["duration"].sum() / 3600, abs=1e-3)
    # examples: the first samples of each source in key order, their FLAC copied out of the tars
    # byte for byte (compared with the Parquet copy of the same sample)
    audio_by_key = {row["key"]: row["audio"]["bytes"] for _, row in df.iterrows()}
    for source, found in r["examples"].items():
        keys = sorted(df[df["source"] == source]["key"])[: len(found)]
        assert [e["key"] for e in found] == keys and len(found) == min(3, len(keys))
        for e in found:
            flac = Path(out, "report", "audio", f"{e['key']}.flac").read_bytes()
            assert flac == audio_by_key[e["key"]]
            assert f'src="audio/{e["key"]}.flac"' in page
            assert e["caption"] == df[df["key"] == e["key"]]["text"].iloc[0][0]
    assert sorted(r["example_audio"]) == sorted(e["key"] for f in r["examples"].values() for e in f)
    assert sorted(p.stem for p in Path(out, "report", "audio").iterdir()) == sorted(r["example_audio"])
    # example rejects: one per code at least, each line found in the reject file it links to
    assert set(r["reject_examples"]) == set(summary["rejects_by_code"])
    for examples in r["reject_examples"].values():
        for e in examples:
            lines = Path(out, e["file"]).read_text().splitlines()
            assert json.dumps({k: v for k, v in e.items() if k != "file"}, sort_keys=True) in [
                json.dumps(json.loads(x), sort_keys=True) for x in lines
            ]
            assert f'href="../{e["file"]}"' in page
    # K2C in words, not the raw counter dump
    st = r["stages"]["k2c"]
    assert f"wrote {st['generated']:,} captions from {st['model_inputs']:,} distinct keyword lists" in page
    assert "<h3>k2c</h3>" not in page


def test_flac_offsets_recorded_by_the_shard_writer_match_the_tar(built):
    """The report's ranged read relies on this: tarfile's own member offsets, read back."""
    import tarfile

    _, out, _, _ = built
    layout = Layout(out, "demo")
    checked = 0
    for stats_file in Path(layout.stats_dir()).rglob("*.json"):
        stats = json.loads(stats_file.read_text())
        with tarfile.open(layout.tar_path(stats["split"], stats["shard"])) as tar:
            members = {m.name: m for m in tar.getmembers()}
        for e in stats["examples"]:
            m = members[f"{e['key']}.flac"]
            assert e["flac_offset"] == m.offset
            checked += 1
    assert checked >= 3
