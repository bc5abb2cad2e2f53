"""The outputs read with no conversion by the libraries users already have.

test_pipeline.py reads every sample with `wds.WebDataset`, soundfile (LAION-style), pyarrow/pandas and
`datasets` (Parquet). Here: `datasets.load_dataset("webdataset", ...)` on the tars, pandas on the
Parquet folder with its Audio metadata, webdataset's own `.decode()` with a FLAC handler, and
LAION-CLAP's loader structure (DataPipeline, split_by_worker, worker processes, sizes.json).

Decoding an `Audio` feature in `datasets` goes through torchcodec, which needs the system's FFmpeg
libraries; the project does not depend on it. Where `datasets` would decode, these tests read the
FLAC bytes (decode=False or a binary feature) and decode them with soundfile instead.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import random
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import webdataset as wds

from clap_corpus.core.layout import Layout

N_CLIPS = 10


@pytest.fixture(scope="module")
def corpus(small_demo):
    """The session's small demo build (tests/conftest.py), read only."""
    assert small_demo.summary["samples"] == N_CLIPS
    return small_demo.out, small_demo.summary, Layout(small_demo.out, "demo")


def _shards(layout: Layout, split: str, *, nonempty: bool = True) -> list[str]:
    """The shard list as LAION-CLAP builds it: the keys of sizes.json."""
    sizes = json.loads(Path(layout.sizes_path(split)).read_text())
    return [os.path.join(layout.webdataset_dir(split), k) for k, n in sizes.items() if n or not nonempty]


def _parquet_keys(out: str, split: str) -> set[str]:
    return set(pd.read_parquet(os.path.join(out, "parquet", split), columns=["key"])["key"])


WDS_FEATURES = datasets.Features(
    {
        "__key__": datasets.Value("string"),
        "__url__": datasets.Value("string"),
        "flac": datasets.Value("binary"),
        "json": datasets.Json(),
        "mel.npy": datasets.Array3D((4, 1001, 64), "float16"),
    }
)


def test_datasets_webdataset_builder_with_named_features(corpus, tmp_path):
    """The dataset card's recipe: every sample, every JSON key, the FLAC bytes and the mel views."""
    out, summary, layout = corpus
    for split, info in summary["splits"].items():
        ds = datasets.load_dataset(
            "webdataset",
            data_files={split: _shards(layout, split)},
            split=split,
            features=WDS_FEATURES,
            cache_dir=str(tmp_path / "hf"),
        )
        assert ds.num_rows == info["samples"]
        assert set(ds["__key__"]) == _parquet_keys(out, split)
        row = ds.with_format("numpy")[0]
        meta = row["json"]
        assert meta["key"] == row["__key__"] and meta["split"] == split
        assert {"text", "tag", "original_data", "view_plan", "license"} <= set(meta)
        audio, rate = sf.read(io.BytesIO(row["flac"]), dtype="int16")
        assert rate == 48000 and audio.ndim == 1 and abs(len(audio) / rate - meta["duration"]) < 1e-3
        assert row["mel.npy"].shape == (4, 1001, 64) and np.isfinite(row["mel.npy"]).all()


def test_datasets_webdataset_builder_infers_audio_json_and_array(corpus):
    """What `load_dataset("webdataset")` makes of the members when left to infer them."""
    _, _, layout = corpus
    ds = datasets.load_dataset("webdataset", data_files={"train": _shards(layout, "train")}, streaming=True)
    feats = ds["train"].features
    assert set(feats) == {"__key__", "__url__", "flac", "json", "mel.npy"}
    assert isinstance(feats["flac"], datasets.Audio)  # from the extension; the rate is not inferred
    assert feats["json"]["text"] == datasets.List(datasets.Value("string"))
    assert feats["json"]["view_plan"]["starts"] == datasets.List(datasets.Value("int64"))
    assert feats["mel.npy"] == datasets.List(datasets.List(datasets.List(datasets.Value("float16"))))
    if importlib.util.find_spec("torchcodec") is None:
        # Even decode=False needs torchcodec to *encode* the Audio column while reading: the reason
        # the card names the features.
        with pytest.raises(ImportError, match="torchcodec"):
            next(iter(ds["train"].decode(False)))
    else:
        sample = next(iter(ds["train"]))
        assert sample["flac"].get_all_samples().sample_rate == 48000


def test_pandas_reads_the_parquet_folder_and_its_audio_metadata(corpus):
    out, summary, _ = corpus
    for split, info in summary["splits"].items():
        folder = os.path.join(out, "parquet", split)
        df = pd.read_parquet(folder)
        assert len(df) == info["samples"] and df["key"].is_unique
        first = df.iloc[0]
        audio, rate = sf.read(io.BytesIO(first["audio"]["bytes"]))
        assert rate == 48000 and first["audio"]["path"] == f"{first['key']}.flac"
        assert abs(len(audio) / rate - first["duration"]) < 1e-3
        assert list(first["text"]) and all(isinstance(t, str) for t in first["text"])
        # Column projection: metadata without reading a byte of audio.
        meta = pd.read_parquet(folder, columns=["key", "text", "duration", "license"])
        assert list(meta.columns) == ["key", "text", "duration", "license"] and len(meta) == len(df)
    # The `huggingface` schema metadata rides along: `datasets` types the column from it alone.
    schema = pq.read_schema(next(Path(out, "parquet").rglob("*.parquet")))
    features = datasets.Features.from_arrow_schema(schema)
    assert features["audio"] == datasets.Audio(sampling_rate=48000)
    hf = json.loads(schema.metadata[b"huggingface"])
    assert hf["info"]["features"]["audio"] == {"_type": "Audio", "sampling_rate": 48000}


def test_webdataset_decode_pipeline_with_a_flac_handler(corpus):
    """webdataset's own decoder: a FLAC handler for audio, its built-in json and npy handlers."""
    _, summary, layout = corpus

    def flac(data: bytes):
        return sf.read(io.BytesIO(data), dtype="float32")

    for split, info in summary["splits"].items():
        dataset = (
            wds.WebDataset(_shards(layout, split), shardshuffle=False, empty_check=False)
            .decode(wds.handle_extension("flac", flac))
            .to_tuple("__key__", "flac", "json", "mel.npy")
        )
        n = 0
        for key, (audio, rate), meta, mel in dataset:
            assert rate == 48000 and audio.dtype == np.float32 and audio.ndim == 1
            assert np.abs(audio).max() <= 1.0
            assert isinstance(meta, dict) and meta["key"] == key
            assert isinstance(mel, np.ndarray) and mel.shape == (4, 1001, 64)
            n += 1
        assert n == info["samples"]


def _laion_preprocess(sample: dict, rng: random.Random) -> dict:
    """LAION-CLAP's preprocess_single in short: soundfile, int16 round trip, one caption drawn."""
    audio, rate = sf.read(io.BytesIO(sample["flac"]))
    audio = (np.clip(audio, -1, 1) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
    meta = json.loads(sample["json"].decode("utf-8"))
    texts = meta["text"]
    return {
        "__key__": sample["__key__"],
        "waveform": audio,
        "rate": rate,
        "text": rng.choice(texts) if isinstance(texts, list) else texts,
        "longer": meta["longer"],
    }


def test_laion_clap_loader_structure_with_worker_processes(corpus):
    """LAION's get_dataset_size from sizes.json, then its pipeline across two loader workers."""
    out, summary, layout = corpus
    shards = _shards(layout, "train", nonempty=False)
    sizes = json.loads(Path(layout.sizes_path("train")).read_text())
    total = sum(int(sizes[os.path.basename(s)]) for s in shards)  # exactly LAION's lookup
    assert total == summary["splits"]["train"]["samples"]
    rng = random.Random(0)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(shards),
        wds.split_by_worker,
        wds.tarfile_to_samples(),
        wds.map(lambda s: _laion_preprocess(s, rng)),
        wds.to_tuple("__key__", "waveform", "rate", "text", "longer"),
    )
    loader = wds.WebLoader(pipeline, batch_size=None, num_workers=2)
    seen = []
    for key, waveform, rate, text, longer in loader:
        assert rate == 48000 and waveform.ndim == 1 and isinstance(text, str) and text
        assert longer == (len(waveform) > 480_000)
        seen.append(key)
    assert sorted(seen) == sorted(_parquet_keys(out, "train")) and len(seen) == total
