"""Hostile input, hangs, crashes and names: nothing lost, nothing leaked (the README's guarantees)."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from hostile import three_hour_flac, write_hostile_corpus

from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.transforms.storage import TEMP_MARKER

RUNNER = ["--runner=FnApiRunner"]
MEMBER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}\.(flac|json|mel\.npy)$")


def _rejects(out: str) -> list[dict]:
    return [
        json.loads(line)
        for path in glob.glob(f"{out}/rejects/**/*.jsonl", recursive=True)
        for line in Path(path).read_text().splitlines()
        if line.strip()
    ]


def _samples(out: str) -> dict[str, dict]:
    rows = {}
    for path in glob.glob(f"{out}/parquet/*/*.parquet"):
        for row in pq.read_table(path, columns=["source_id", "truncated", "duration", "key"]).to_pylist():
            rows[row["source_id"]] = row
    return rows


def _output_files(out: str) -> dict[str, bytes]:
    return {
        os.path.relpath(p, out): Path(p).read_bytes()
        for p in sorted(glob.glob(f"{out}/**/*", recursive=True))
        if os.path.isfile(p) and p.endswith((".tar", ".parquet", "sizes.json", ".jsonl"))
    }


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    spec, expect = write_hostile_corpus(root)
    out = str(root / "out")
    summary = run_corpus(spec, out, RUNNER)
    return out, summary, expect


def test_every_hostile_file_is_a_sample_or_a_reject_with_its_reason(hostile_run):
    out, summary, expect = hostile_run
    samples, rejects = _samples(out), {r["source_id"]: r for r in _rejects(out)}
    assert summary["accounting_ok"]
    assert summary["sources"]["web"]["inputs"] == len(expect) == len(samples) + len(rejects)
    for name, want in expect.items():
        if want.code is None:
            assert name in samples, (name, rejects.get(name))
            assert samples[name]["truncated"] == want.truncated, name
        else:
            assert name in rejects, (name, "became a sample")
            assert rejects[name]["code"] == want.code, (name, rejects[name])
            assert rejects[name]["reason"] and rejects[name]["stage"], name


def test_long_file_is_cut_at_the_cap_and_flagged(hostile_run):
    out, summary, _ = hostile_run
    row = _samples(out)["three_hours.flac"]
    assert row["truncated"] and row["duration"] == pytest.approx(120.0)
    assert summary["truncated"] == 1


def test_nothing_outside_the_source_root_is_read(hostile_run):
    out, _, _ = hostile_run
    reasons = {r["source_id"]: r for r in _rejects(out)}
    for name in ("link_out.wav", "dotdot", "absolute", "url"):
        assert reasons[name]["stage"] == "manifest" and reasons[name]["code"] == "outside_root"
    # the playlist and concat list point at good.ogg inside the root; they are still not followed
    assert reasons["playlist.mp3"]["code"] == reasons["concat_list.wav"]["code"] == "format_not_allowed"


def test_a_link_swapped_in_after_the_manifest_is_read_is_refused_at_read_time(tmp_path):
    from clap_corpus.manifests.source import PathRejected, SourceSpec, check_still_inside, resolve_audio_path

    root = tmp_path / "audio"
    root.mkdir()
    (root / "a.wav").write_bytes(b"x")
    (tmp_path / "secret.wav").write_bytes(b"y")
    src = SourceSpec(name="s", adapter="generic", audio_root=str(root))
    path = resolve_audio_path(src, "a.wav")
    (root / "a.wav").unlink()
    os.symlink(tmp_path / "secret.wav", root / "a.wav")
    with pytest.raises(PathRejected):
        check_still_inside(src, path)


def test_a_stalling_file_is_rejected_without_stalling_its_shard(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "endless.flac").write_bytes(three_hour_flac())
    names = ["endless.flac"]
    for i in range(3):
        (audio / f"ok{i}.mp3").write_bytes(
            synth.encode_audio(synth.tone(300.0 + 100 * i, 1.0, 44_100), 44_100, "mp3")
        )
        names.append(f"ok{i}.mp3")
    (audio / "m.jsonl").write_text(
        "".join(json.dumps({"audio": n, "id": n, "captions": ["x"]}) + "\n" for n in names)
    )
    spec = tmp_path / "spec.yaml"
    # No duration cap to speak of: only the time limit can stop the three-hour file.
    spec.write_text(
        yaml.safe_dump(
            {
                "corpus": "stall",
                "options": {
                    "shard_size": 8,
                    "max_duration_s": 20000.0,
                    "decode_time_limit_s": 1.0,
                    "store_mel": False,
                },
                "sources": [
                    {"name": "s", "adapter": "generic", "manifest": "audio/m.jsonl", "audio_root": "audio"}
                ],
            }
        )
    )
    out = str(tmp_path / "out")
    summary = run_corpus(str(spec), out, RUNNER)
    assert summary["accounting_ok"] and summary["samples"] == 3
    (reject,) = _rejects(out)
    assert reject["source_id"] == "endless.flac" and reject["code"] == "time_limit"


def test_worker_memory_stays_under_the_stated_cap(tmp_path):
    """docs/guarantees.md: a worker's peak RSS stays under 1.5 GB + max_file_bytes with the default caps."""
    spec, _ = write_hostile_corpus(tmp_path, extra_options={"max_duration_s": 300.0})
    code = (
        "import resource, sys; from clap_corpus.pipeline.launch.run import run_corpus;"
        f"s = run_corpus({spec!r}, {str(tmp_path / 'out')!r}, ['--runner=FnApiRunner']);"
        # VmHWM, the peak of this process's own memory: ru_maxrss also keeps the parent's size from
        # before the exec (Linux carries the high-water mark across execve), and pytest's own process
        # grows past 1.5 GB over the suite.
        "print(next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak_kib = int(proc.stdout.strip().splitlines()[-1])
    assert peak_kib * 1024 < 1.5 * 2**30 + 3_000_000, f"peak RSS {peak_kib / 1024:.0f} MiB"


def test_output_names_never_carry_path_pieces_from_the_input(tmp_path):
    audio = tmp_path / "audio"
    (audio / "sub").mkdir(parents=True)
    clip = synth.encode_audio(synth.tone(440.0, 1.0, 16_000), 16_000, "flac")
    ids = [
        "../../etc/passwd",
        "a.b.c",
        "sub/dir/name",
        "x" * 300,
        "ünïcödé 音",
        "$(rm -rf ~)",
        "CON",
        ".hidden",
    ]
    rows = []
    for i, sid in enumerate(ids):
        (audio / "sub" / f"f{i}.flac").write_bytes(clip)
        rows.append({"audio": f"sub/f{i}.flac", "id": sid, "captions": ["a tone"]})
    (audio / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "corpus": "names",
                "options": {"shard_size": 3},
                "sources": [
                    {"name": "src", "adapter": "generic", "manifest": "audio/m.jsonl", "audio_root": "audio"}
                ],
            }
        )
    )
    out = tmp_path / "out"
    summary = run_corpus(str(spec), str(out), RUNNER)
    assert summary["samples"] == len(ids)
    for path in out.rglob("*"):
        if path.is_file():
            rel = path.relative_to(out).as_posix()
            assert re.fullmatch(
                r"(webdataset/names/[a-z]+/(\d{6}\.tar|sizes\.json)|parquet/[a-z]+/\d{6}\.parquet"
                r"|stats/[a-z]+/\d{6}\.json|rejects/shards/[a-z]+/\d{6}\.jsonl|rejects/manifest/src\.jsonl"
                r"|summary\.json|plan\.json|duplicates\.jsonl|README\.md"
                r"|report/(index\.html|report\.json|[a-z_]+\.png|audio/[A-Za-z0-9_-]+\.flac))",
                rel,
            ), rel
    for tar_path in out.rglob("*.tar"):
        with tarfile.open(tar_path) as tf:
            for m in tf.getmembers():
                assert MEMBER_RE.match(m.name) and m.isfile(), m.name
                if m.name.endswith(".json"):
                    text = tf.extractfile(m).read().decode()
                    assert str(tmp_path) not in text  # no local paths in sample JSON


def _shards_spec(root: Path, *, max_seconds: float = 30.0) -> str:
    return write_demo_corpus(str(root), n_clips=16, max_seconds=max_seconds, shard_size=2, bad_rows=True)


@pytest.mark.slow
def test_sigkill_midway_then_rerun_equals_a_clean_run(tmp_path):
    spec = _shards_spec(tmp_path / "src")
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "clap_corpus.pipeline",
        "run",
        "--spec",
        spec,
        "--output",
        str(out),
        "--runner=FnApiRunner",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not glob.glob(f"{out}/stats/*/*.json"):
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = len(glob.glob(f"{out}/stats/*/*.json"))
    assert not (out / "summary.json").exists(), "the run finished before it could be killed"

    resumed = run_corpus(spec, str(out), RUNNER)
    n_shards = sum(s["shards"] for s in resumed["splits"].values())
    assert 1 <= done_at_kill < n_shards
    assert resumed["shards_skipped_as_complete"] == done_at_kill
    assert resumed["accounting_ok"]
    assert not glob.glob(f"{out}/**/*{TEMP_MARKER}*", recursive=True)
    clean = tmp_path / "clean"
    run_corpus(spec, str(clean), RUNNER)
    assert _output_files(str(out)) == _output_files(str(clean))
    keys = []
    for tar_path in out.rglob("*.tar"):
        with tarfile.open(tar_path) as tf:  # every tar is complete and readable
            keys += [m.name.split(".")[0] for m in tf.getmembers() if m.name.endswith(".json")]
    assert len(keys) == len(set(keys)) == resumed["samples"]


@pytest.mark.slow
def test_a_changed_spec_never_reuses_old_shards(tmp_path):
    spec = _shards_spec(tmp_path / "src", max_seconds=12.0)
    out = tmp_path / "out"
    run_corpus(spec, str(out), RUNNER)
    doc = yaml.safe_load(Path(spec).read_text())
    doc["options"]["max_duration_s"] = 5.0
    Path(spec).write_text(yaml.safe_dump(doc))
    again = run_corpus(spec, str(out), RUNNER)
    assert again["shards_skipped_as_complete"] == 0 and again["truncated"] > 0
    clean = tmp_path / "clean"
    run_corpus(spec, str(clean), RUNNER)
    assert _output_files(str(out)) == _output_files(str(clean))


def test_a_changed_manifest_row_redoes_only_its_shard(tmp_path):
    spec = _shards_spec(tmp_path / "src", max_seconds=12.0)
    out = tmp_path / "out"
    first = run_corpus(spec, str(out), RUNNER)
    manifest = Path(spec).parent / "raw" / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    rows[0]["captions"] = ["A different caption"]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = run_corpus(spec, str(out), RUNNER)
    n_shards = sum(s["shards"] for s in first["splits"].values())
    assert again["shards_skipped_as_complete"] == n_shards - 1
    texts = []
    for tar_path in out.rglob("*.tar"):
        with tarfile.open(tar_path) as tf:
            texts += [
                json.loads(tf.extractfile(m).read())["text"]
                for m in tf.getmembers()
                if m.name.endswith(".json")
            ]
    assert ["A different caption"] in texts


def test_stale_shards_from_a_bigger_earlier_run_are_removed(tmp_path):
    spec = _shards_spec(tmp_path / "src", max_seconds=12.0)
    out = tmp_path / "out"
    run_corpus(spec, str(out), RUNNER)
    doc = yaml.safe_load(Path(spec).read_text())
    doc["options"]["shard_size"] = 8
    Path(spec).write_text(yaml.safe_dump(doc))
    summary = run_corpus(spec, str(out), RUNNER)
    for split, info in summary["splits"].items():
        tars = sorted(p.name for p in (out / "webdataset" / "demo" / split).glob("*.tar"))
        sizes = json.loads((out / "webdataset" / "demo" / split / "sizes.json").read_text())
        assert tars == sorted(sizes) and len(tars) == info["shards"]
    stats = glob.glob(f"{out}/stats/*/*.json")
    assert len(stats) == sum(s["shards"] for s in summary["splits"].values())


def test_three_hour_file_decodes_in_bounded_memory():
    import tracemalloc

    from clap_corpus.transforms.decode import decode_audio

    data = three_hour_flac()
    tracemalloc.start()
    try:
        out = decode_audio(data, max_duration_s=60.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.truncated and len(out.samples) == 60 * 48_000
    assert peak < 3 * 60 * 48_000 * 4  # a few copies of the capped output, never the three hours
    assert np.isfinite(out.samples).all()
