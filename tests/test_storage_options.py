"""Cheaper storage (issue 17): one stored view for clips whose four views are one, expanded on read,
and the bytes per sample and per hour of audio in the run summary."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from docs_text import docs_page
from helpers.corpora import build_demo

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import load_spec
from clap_corpus.trainer.data import decode_mel
from clap_corpus.transforms.captions import render_captions
from clap_corpus.transforms.sample import SampleOptions, process_sample
from clap_corpus.transforms.views import ViewPlan, expand_views

RATE = 44_100


def _sample(seconds: float, single: bool):
    t = np.arange(int(seconds * RATE)) / RATE
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.3 * t))).astype(np.float32)
    record = render_captions(
        Record(key=f"k{seconds}", source="s", source_id="k", audio=LocalFile("/k"), row=1, labels=("Bell",))
    )
    assert isinstance(record, Record)
    options = SampleOptions(mel_single_view=single)
    return process_sample(record, synth.encode_audio(wave, RATE, "ogg"), options)


@pytest.mark.parametrize(("seconds", "stored_views"), [(3.7, 1), (10.0, 1), (23.3, 4)])
def test_single_view_is_the_view_the_four_repeat(seconds: float, stored_views: int) -> None:
    four, single = _sample(seconds, single=False), _sample(seconds, single=True)
    assert four.mel is not None and single.mel is not None
    assert four.mel.shape == (4, 1001, 64) and single.mel.shape == (stored_views, 1001, 64)
    assert single.meta["longer"] is (stored_views == 4)
    # the FLAC and the JSON are the same bytes; the mel member is the same views, stored once
    assert single.flac == four.flac and single.json_bytes() == four.json_bytes()
    np.testing.assert_array_equal(expand_views(single.mel), four.mel)
    # docs/views.md's one line for readers without this package, run as written there
    assert "`mel = np.repeat(mel, 4 // len(mel), axis=0)`" in docs_page("views.md")
    mel = np.load(io.BytesIO(single.mel_bytes()))
    mel = np.repeat(mel, 4 // len(mel), axis=0)  # [1|4, 1001, 64] -> [4, 1001, 64]
    np.testing.assert_array_equal(mel, four.mel)
    if stored_views == 1:
        assert len(single.mel_bytes()) < len(four.mel_bytes()) / 3.9
    # the trainer expands on read, to the tensor it reads from the four stored views
    plan = ViewPlan.from_json(single.meta["view_plan"])
    assert torch.equal(decode_mel(single.mel_bytes(), plan), decode_mel(four.mel_bytes(), plan))


def test_a_single_view_on_a_longer_clip_is_a_bad_mel() -> None:
    from clap_corpus.trainer.data import BAD_MEL, SkipSample

    long, short = _sample(23.3, single=True), _sample(3.7, single=True)
    assert short.mel is not None
    with pytest.raises(SkipSample) as e:
        decode_mel(short.mel_bytes(), ViewPlan.from_json(long.meta["view_plan"]))
    assert e.value.code == BAD_MEL
    with pytest.raises(ValueError):
        expand_views(np.zeros((2, 1001, 64), np.float16))


def test_the_option_changes_the_fingerprint_only_when_set(tmp_path) -> None:
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav"}\n')

    def spec(**options):
        doc = {
            "corpus": "c",
            "options": options,
            "sources": [{"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "."}],
        }
        path = tmp_path / f"spec{len(options)}{options.get('mel_single_view')}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return load_spec(str(path))

    plain = spec()
    assert spec(mel_single_view=False).fingerprint() == plain.fingerprint()
    assert spec(mel_single_view=True).fingerprint() != plain.fingerprint()


def _members(out) -> dict[str, bytes]:
    found = {}
    for path in sorted(out.rglob("*.tar")):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                found[m.name] = tar.extractfile(m).read()
    return found


def test_a_run_with_single_views_stores_less_and_says_how_much(tmp_path) -> None:
    summaries, members = {}, {}
    for single in (False, True):
        root = tmp_path / f"single-{single}"
        spec = write_demo_corpus(
            str(root / "src"),
            n_clips=6,
            max_seconds=20.0,
            k2c_model=None,
            bad_rows=False,
            extra_options={"mel_single_view": single, "formats": ["webdataset", "parquet"]},
        )
        summaries[single] = run_corpus(spec, str(root / "out"), ["--runner=FnApiRunner"])
        members[single] = _members(root / "out")
    four, one = summaries[False], summaries[True]
    assert four["samples"] == one["samples"] == 6
    assert members[False].keys() == members[True].keys()
    short = 0
    for name, data in members[True].items():
        if not name.endswith(".mel.npy"):
            assert data == members[False][name], name  # FLAC and JSON unchanged
            continue
        meta = json.loads(members[True][name.replace(".mel.npy", ".json")])
        stored = np.load(io.BytesIO(data))
        assert stored.shape[0] == (4 if meta["longer"] else 1)
        short += not meta["longer"]
        np.testing.assert_array_equal(expand_views(stored), np.load(io.BytesIO(members[False][name])))
    assert 0 < short < 6
    for summary in (four, one):
        tar = summary["storage"]["tar"]
        total = sum(len(d) for d in members[summary is one].values())
        assert tar["bytes"] > total  # tar headers and padding on top of the members
        assert tar["bytes_per_sample"] == round(tar["bytes"] / 6)
        # summary["hours"] is rounded to 4 decimals (0.36 s), the rate is computed from the exact seconds
        assert abs(tar["bytes_per_hour"] - tar["bytes"] / summary["hours"]) < tar["bytes_per_hour"] * 0.01
        assert summary["storage"]["parquet"]["bytes"] > 0
    # three quarters of every short clip's mel member saved: 3 x 1001 x 64 float16 each
    saved = four["storage"]["tar"]["bytes"] - one["storage"]["tar"]["bytes"]
    tars = len(list((tmp_path / "single-True" / "out").rglob("*.tar")))
    assert abs(saved - short * 3 * 1001 * 64 * 2) <= tars * 10240  # a tar ends on a 10 KiB record
    assert four["storage"]["parquet"] == one["storage"]["parquet"]


def _demo_run(root: Path, n_clips: int, options: dict) -> tuple[str, dict]:
    """The demo corpus (no K2C, no bad rows, clips up to 14 s) built into ``root/out``: (spec, summary)."""
    build = build_demo(
        root, n_clips=n_clips, max_seconds=14.0, k2c_model=None, bad_rows=False, extra_options=options
    )
    return build.spec, build.summary


def test_sidecar_views_next_to_audio_tars_without_mel(tmp_path) -> None:
    from clap_corpus.core.layout import Layout

    spec, summary = _demo_run(tmp_path, 4, {"formats": ["webdataset", "views"], "mel_single_view": True})
    assert summary["samples"] == 4 and summary["accounting_ok"]
    layout = Layout(str(tmp_path / "out"), "demo")
    audio = _members(tmp_path / "out" / "webdataset")
    views = _members(tmp_path / "out" / "views")
    assert not any(name.endswith(".mel.npy") for name in audio)  # LAION's loader reads no mel
    assert sorted(views) == sorted(n.replace(".json", ".mel.npy") for n in audio if n.endswith(".json"))
    for split, folder in summary["outputs"]["views"].items():
        assert folder == layout.views_dir(split)
    for name, data in views.items():
        meta = json.loads(audio[name.replace(".mel.npy", ".json")])
        assert np.load(io.BytesIO(data)).shape == ((4 if meta["longer"] else 1), 1001, 64)
    figures = summary["storage"]
    views_bytes = sum(p.stat().st_size for p in (tmp_path / "out" / "views").rglob("*.tar"))
    assert figures["views"]["bytes"] == views_bytes
    assert figures["tar"]["bytes"] == sum(
        p.stat().st_size for p in (tmp_path / "out" / "webdataset").rglob("*.tar")
    )
    assert sorted(figures) == ["tar", "views"]  # no Parquet written, none listed (not a 0-byte entry)
    # store_mel: false leaves nothing to put in a sidecar: a spec error, not an empty shard set
    bad = yaml.safe_load(Path(spec).read_text())
    bad["options"]["store_mel"] = False
    (tmp_path / "src" / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(Exception, match="store_mel"):
        load_spec(str(tmp_path / "src" / "bad.yaml"))


def test_the_trainer_reads_sidecar_views_beside_tar_and_parquet_shards(tmp_path) -> None:
    from clap_corpus.trainer.data import UNREADABLE_VIEWS, SkipCounts, eval_loader, iter_shard, list_shards
    from clap_corpus.trainer.data import resolve_layout as trainer_layout

    options = {"formats": ["webdataset", "parquet", "views"], "mel_single_view": True, "shard_size": 2}
    _, summary = _demo_run(tmp_path, 5, options)
    assert summary["samples"] == 5
    layout = trainer_layout(str(tmp_path / "out"))
    split = "train"
    cpu = torch.device("cpu")

    def views(fmt: str, mel: str) -> dict[str, torch.Tensor]:
        out = {}
        for batch in eval_loader(list_shards(layout, split, fmt), 8, 0, mel):
            computed = set(batch.compute)
            for i, (key, v) in enumerate(zip(batch.keys, batch.views(cpu), strict=True)):
                out[key] = (v, i in computed)
        return out

    shards = list_shards(layout, split, "webdataset")
    assert shards and all(
        s.views_url and s.views_url.startswith(str(tmp_path / "out" / "views")) for s in shards
    )
    from_flac = views("webdataset", "compute")
    assert from_flac and all(was_computed for _, was_computed in from_flac.values())
    for fmt in ("webdataset", "parquet"):
        stored = views(fmt, "stored")  # "stored": only samples with views, so every one came from the sidecar
        assert stored.keys() == from_flac.keys()
        for key, (v, was_computed) in stored.items():
            assert not was_computed, (fmt, key)
            assert torch.equal(v, from_flac[key][0]), (fmt, key)  # the sidecar's views, expanded, bit for bit

    # A sidecar cut short loses no sample: the rest of its shard is read from the FLAC, and it is counted.
    first = shards[0]
    data = Path(first.views_url).read_bytes()
    Path(first.views_url).write_bytes(data[: len(data) // 3])
    counts = SkipCounts()
    raws = list(iter_shard(first, counts, "auto"))
    assert len(raws) == first.samples and counts[UNREADABLE_VIEWS] == 1
    assert any(r.mel is None and r.flac is not None for r in raws)


def test_sidecar_views_pair_by_key_and_pass_over_what_the_other_side_lacks(tmp_path) -> None:
    from clap_corpus.trainer.data import UNREADABLE_VIEWS, SidecarViews, SkipCounts

    path = tmp_path / "000000.tar"
    with tarfile.open(path, "w") as tar:
        for key in ("a", "b", "d", "e"):
            data = f"views of {key}".encode()
            info = tarfile.TarInfo(f"{key}.mel.npy")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    counts = SkipCounts()
    with SidecarViews(str(path), counts) as sidecar:
        # audio shard keys: a, c (no views stored), d, f (after the sidecar's last: e is passed over)
        got = {key: sidecar.take(key) for key in ("a", "c", "d", "f")}
    assert got == {"a": b"views of a", "c": None, "d": b"views of d", "f": None}
    assert not counts
    with SidecarViews(str(tmp_path / "missing.tar"), counts) as sidecar:
        assert sidecar.take("a") is None
    assert counts == {UNREADABLE_VIEWS: 1}
