"""The benchmark's own parts: the bench corpus is what the issue asks for, and the arithmetic is right.

The benchmark itself (bench/bench_pipeline.py) is a script, never a timed test; this only checks that
the corpus it measures on and the numbers it derives mean what its report says.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

# bench/ lives in the checkout, not in the installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_pipeline import Measurement, fit, median_fit, repeat_fits
from bench.corpus import build_bench_corpus, corpus_files, manifest_path, plan_bench, write_spec
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.spec.corpus import load_spec


def test_plan_covers_formats_rates_channels_and_both_length_classes():
    plan = plan_bench(48)
    assert {c.fmt for c in plan} == set(synth.FORMATS)
    assert all(22050 <= c.rate <= 48000 for c in plan)
    short = [c for c in plan if c.seconds <= 10.0]
    long = [c for c in plan if 10.0 < c.seconds <= 60.0]
    assert len(short) == len(long) == 24
    for fmt in synth.FORMATS:
        mine = [c for c in plan if c.fmt == fmt]
        assert {c.channels for c in mine} == {1, 2}, fmt
        assert any(c.seconds <= 10 for c in mine) and any(c.seconds > 10 for c in mine), fmt
    # the small corpus of a run is the first clips of the large one
    assert plan_bench(12) == plan[:12]
    assert plan_bench(48, seed=1) != plan


def test_corpus_files_decode_and_specs_select_a_prefix(tmp_path):
    folder = build_bench_corpus(str(tmp_path), 6)
    assert build_bench_corpus(str(tmp_path), 6) == folder  # cached: done.json matches the plan
    files = corpus_files(manifest_path(folder))
    assert [os.path.basename(p) for p, _ in files] == [c.file for c in plan_bench(6)]
    small = manifest_path(folder, 4)
    assert [row["id"] for _, row in corpus_files(small)] == [row["id"] for _, row in files[:4]]
    spec = load_spec(write_spec(folder, "spec-4-lfl.yaml", clips=4, shard_size=2, store_mel=False))
    assert spec.options.shard_size == 2 and spec.options.sample.store_mel is False
    assert spec.sources[0].manifest == small
    with pytest.raises(ValueError, match="has 6 clips"):
        manifest_path(folder, 7)
    marker = json.loads(Path(folder, "done.json").read_text())
    assert len(marker["clips"]) == 6


def _m(config: str, clips: int, audio: float, cpu: float, wall: float) -> Measurement:
    return Measurement(config, clips, audio, wall, cpu, clips, 0.0, 0.0, 1)


def test_fit_splits_start_up_from_the_steady_rate():
    # cpu = 12 s of start-up + audio / 300
    small, big = _m("p", 60, 1200.0, 12 + 1200 / 300, 20.0), _m("p", 240, 4800.0, 12 + 4800 / 300, 40.0)
    f = fit(small, big)
    assert f.rate == pytest.approx(300.0)
    assert f.startup_s == pytest.approx(12.0)
    assert f.wall_rate == pytest.approx(3600 / 20)
    # per repeat, then the median: one disturbed repeat does not move the result
    runs = {60: [small, small, _m("p", 60, 1200.0, 30.0, 20.0)], 240: [big, big, big]}
    fits = repeat_fits(runs, (60, 240))
    assert [round(x.rate) for x in fits[:2]] == [300, 300] and fits[2].rate > 1000
    assert median_fit(fits).rate == pytest.approx(300.0)


def test_a_folder_of_recordings_becomes_a_bench_corpus(tmp_path):
    from bench.corpus import build_folder_corpus, corpus_seconds, manifest_rows

    src = tmp_path / "recordings"
    (src / "sub").mkdir(parents=True)
    lengths = {"a.ogg": 1.5, "sub/b.mp3": 2.0, "c.flac": 0.75, "sub/d.wav": 3.0}
    for name, seconds in lengths.items():
        t = np.arange(int(seconds * 22_050)) / 22_050
        wave = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
        (src / name).write_bytes(synth.encode_audio(wave, 22_050, name.rsplit(".", 1)[1]))
    (src / "broken.mp3").write_bytes(b"not audio at all" * 10)
    (src / "notes.txt").write_text("not a recording")
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    folder = build_folder_corpus(str(src), str(tmp_path / "corpora"))
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before  # nothing written under src
    rows = manifest_rows(folder)
    assert sorted(r["source_file"] for r in rows) == sorted(lengths)
    assert json.loads((Path(folder) / "left_out.json").read_text()) == ["broken.mp3"]
    for r in rows:
        assert abs(r["seconds"] - lengths[r["source_file"]]) < 0.1, r  # mp3 adds its encoder delay
        assert (Path(folder) / "raw" / r["audio"]).read_bytes() == (src / r["source_file"]).read_bytes()
    assert abs(corpus_seconds(folder, 4) - sum(lengths.values())) < 0.3
    # cached: the same files give the same folder without copying again
    assert build_folder_corpus(str(src), str(tmp_path / "corpora")) == folder
    # the longest file first: both bench sizes (a quarter, all) decode it, so their peaks compare
    assert rows[0]["source_file"] == "sub/d.wav"

    from bench.bench_breakdown import CLASSES, STEPS, breakdown, report
    from bench.laion_way import ffmpeg_available

    if ffmpeg_available():
        pytest.skip(f"the breakdown's LAION column: {ffmpeg_available()}")
    tallies, costs = breakdown(folder)
    assert tallies["all"].files == 4 and tallies[CLASSES[0][1]].files == 4  # every clip is under 10 s
    assert len(costs) == 4 and abs(sum(c.laion_s for c in costs) - tallies["all"].laion_s) < 1e-9
    assert abs(tallies["all"].audio_s - sum(lengths.values())) < 0.3
    assert tallies["all"].laion_s > 0 and all(tallies["all"].steps[s] >= 0 for s in STEPS)
    table = report(tallies)
    assert table[2].startswith(f"| {CLASSES[0][1]} | 4 |") and table[-1].startswith("| all | 4 |")


def test_the_breakdown_fit_splits_per_clip_from_per_second_cost():
    from bench.bench_breakdown import FileCost, per_clip_and_second

    costs = [
        FileCost(s, 0.1 + 0.002 * s, 0.01 + 0.001 * s, 0.02 + 0.001 * s) for s in (1.0, 5.0, 30.0, 300.0)
    ]
    a, b = per_clip_and_second(costs, "laion_s")
    assert abs(a - 0.1) < 1e-9 and abs(b - 0.002) < 1e-9
    a, b = per_clip_and_second(costs, "everything_s")
    assert abs(a - 0.02) < 1e-9 and abs(b - 0.001) < 1e-9
