"""End to end: a real corpus of encoded files through the real Beam pipeline, read back by the
libraries users read it with (webdataset, pyarrow/pandas, Hugging Face datasets, soundfile)."""

import glob
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import webdataset as wds

from clap_corpus.core.layout import Layout
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.transforms.flac import decode_flac
from clap_corpus.transforms.views import ViewPlan, views_from_int16

RUNNER = ["--runner=FnApiRunner"]
N_CLIPS = 12
N_BAD = 7


@pytest.fixture(scope="session")
def demo_spec(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_source")
    return write_demo_corpus(str(root), n_clips=N_CLIPS, max_seconds=25.0, shard_size=4)


@pytest.fixture(scope="session")
def built(demo_spec, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("demo_out"))
    summary = run_corpus(demo_spec, out, RUNNER)
    return out, summary


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path) and path.endswith((".tar", ".parquet", "sizes.json", ".jsonl")):
            out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out


def test_summary_accounting_and_rejects(built):
    out, s = built
    assert s["accounting_ok"]
    src = s["sources"]["synthetic"]
    assert src["inputs"] == N_CLIPS + N_BAD and src["samples"] == N_CLIPS and src["rejects"] == N_BAD
    assert s["inputs"] == s["samples"] + s["rejects"]
    assert s["rejects_by_code"] == {
        "caption_not_text": 1,
        "corrupt": 1,
        "empty_file": 1,
        "missing_file": 1,
        "missing_path": 1,
        "not_audio": 1,
        "outside_root": 1,
    }
    rejects = [
        json.loads(line)
        for p in glob.glob(f"{out}/rejects/**/*.jsonl", recursive=True)
        for line in Path(p).read_text().splitlines()
        if line.strip()
    ]
    assert len(rejects) == N_BAD
    assert all(r["reason"] and r["stage"] and r["source"] == "synthetic" for r in rejects)
    by_path = {os.path.basename(r["path"]): r for r in rejects if r["path"]}
    assert by_path["does_not_exist.flac"]["code"] == "missing_file"
    assert by_path["notes_not_audio.wav"]["stage"] == "decode"
    report = format_report(RunSummary.from_json(s))
    assert "accounting" in report and "holds" in report


def test_webdataset_library_reads_every_sample(built):
    out, s = built
    layout = Layout(out, "demo")
    seen = 0
    for split, info in s["splits"].items():
        sizes = json.loads(Path(layout.sizes_path(split)).read_text())
        assert sum(sizes.values()) == info["samples"]
        urls = [os.path.join(layout.webdataset_dir(split), name) for name in sizes]
        for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
            seen += 1
            meta = json.loads(sample["json"])
            assert sample["__key__"] == meta["key"] and meta["split"] == split
            assert meta["text"] and all(isinstance(t, str) for t in meta["text"])
            assert isinstance(meta["tag"], list) and isinstance(meta["original_data"], dict)
            pcm, rate = decode_flac(sample["flac"])
            assert rate == 48000 and pcm.dtype == np.int16 and pcm.ndim == 1
            assert abs(len(pcm) / 48000 - meta["duration"]) < 1e-3
            mel = np.load(io.BytesIO(sample["mel.npy"]))
            assert mel.shape == (4, 1001, 64) and mel.dtype == np.float16
            plan = ViewPlan.from_json(meta["view_plan"])
            assert plan.longer == meta["longer"] == (plan.mode == "fusion" and plan.starts is not None)
            # the stored views are exactly reproducible from the stored FLAC and plan
            np.testing.assert_array_equal(views_from_int16(pcm, plan).astype(np.float16), mel)
    assert seen == N_CLIPS


def test_laion_clap_style_loading(built):
    """LAION-CLAP's loader: shard list from sizes.json keys, soundfile on the flac, json `text`."""
    out, _ = built
    layout = Layout(out, "demo")
    sizes = json.loads(Path(layout.sizes_path("train")).read_text())
    urls = [f"{layout.webdataset_dir('train')}/{k}" for k in sizes]
    n = 0
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        audio, sr = sf.read(io.BytesIO(sample["flac"]))
        info = sf.info(io.BytesIO(sample["flac"]))
        assert sr == 48000 and audio.ndim == 1 and info.subtype == "PCM_16"
        assert isinstance(json.loads(sample["json"])["text"][0], str)
        n += 1
    assert n == sum(sizes.values()) > 0


def test_tar_layout_is_deterministic_and_ustar(built):
    out, _ = built
    for path in glob.glob(f"{out}/webdataset/demo/*/*.tar"):
        with tarfile.open(path) as tf:
            members = tf.getmembers()
        names = [m.name for m in members]
        keys = [n.split(".", 1)[0] for n in names]
        assert keys == sorted(keys)  # sorted by key, members of a sample adjacent
        for i in range(0, len(names), 3):
            k = keys[i]
            assert names[i : i + 3] == [f"{k}.flac", f"{k}.json", f"{k}.mel.npy"]
        assert all(m.mtime == 0 and m.uid == 0 and m.mode == 0o644 and len(m.name) < 100 for m in members)


def test_parquet_read_by_pyarrow_pandas_and_datasets(built):
    out, _ = built
    files = sorted(glob.glob(f"{out}/parquet/*/*.parquet"))
    df = __import__("pandas").concat([pq.read_table(f).to_pandas() for f in files])
    assert len(df) == N_CLIPS and df["key"].is_unique
    row = df.iloc[0]
    pcm, rate = decode_flac(row["audio"]["bytes"])
    assert rate == 48000 and row["audio"]["path"] == f"{row['key']}.flac"
    assert abs(len(pcm) / 48000 - row["duration"]) < 1e-3
    assert set(df["original_sample_rate"]) <= {16000, 22050, 24000, 32000, 44100, 48000}
    assert set(df["original_channels"]) <= {1, 2} and len(set(df["original_channels"])) == 2
    ViewPlan.from_json(json.loads(row["view_plan"]))

    import datasets

    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train")
    feat = ds.features["audio"]
    assert isinstance(feat, datasets.Audio) and feat.sampling_rate == 48000
    raw = ds.cast_column("audio", datasets.Audio(sampling_rate=48000, decode=False))[0]["audio"]
    assert decode_flac(raw["bytes"])[1] == 48000
    assert ds.features["text"].feature.dtype == "string"


def test_same_spec_twice_gives_identical_bytes(demo_spec, built, tmp_path):
    out, _ = built
    run_corpus(demo_spec, str(tmp_path), RUNNER)
    a, b = _files(out), _files(str(tmp_path))
    assert a.keys() == b.keys() and len(a) > 5
    for name in a:
        assert a[name] == b[name], name


def test_rerun_into_same_output_skips_finished_shards(demo_spec, tmp_path):
    first = run_corpus(demo_spec, str(tmp_path), RUNNER)
    before = _files(str(tmp_path))
    second = run_corpus(demo_spec, str(tmp_path), RUNNER)
    n_shards = sum(v["shards"] for v in first["splits"].values())
    assert second["shards_skipped_as_complete"] == n_shards
    assert _files(str(tmp_path)) == before and second["accounting_ok"]


@pytest.mark.slow
def test_cli_demo_with_default_multiprocess_runner(tmp_path):
    """The README's demo path: `clapcorpus demo` on the default local runner (all cores)."""
    proc = subprocess.run(
        [sys.executable, "-m", "clap_corpus.pipeline", "demo", "--output", str(tmp_path), "--clips", "6"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accounting: inputs 13 = samples 6 + rejects 7: holds" in proc.stdout
    # quiet by default: progress lines on stderr, no log records (-v brings the INFO ones)
    assert " INFO " not in proc.stderr and "progress:" in proc.stderr
    summary = (tmp_path / "corpus" / "summary.json").read_text()
    # indented for people, and the same document for programs
    assert summary.startswith('{\n  "') and json.loads(summary)["corpus"] == "demo"
