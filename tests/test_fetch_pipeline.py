"""The fetch stage in real runs: URLs in a manifest, a real server on 127.0.0.1, FnApiRunner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from docs_text import docs_page
from fetch_server import FetchServer

from clap_corpus.pipeline.cli.main import main
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import format_report, run_corpus
from clap_corpus.pipeline.outputs.summary_model import RunSummary

RUNNER = "--runner=FnApiRunner"
FORMATS = ("wav", "flac", "mp3", "ogg", "wav", "flac")


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    out = {}
    for i, fmt in enumerate(FORMATS):
        tone = synth.tone(300.0 + 97 * i, 0.5, 16000)
        out[f"clip{i}.{fmt}"] = synth.encode_audio(tone, 16000, fmt)
    return out


def _spec(tmp_path: Path, rows: list[str], server: FetchServer, **fetch) -> str:
    (tmp_path / "audio").mkdir(exist_ok=True)
    (tmp_path / "audio" / "local.wav").write_bytes(
        synth.encode_audio(synth.tone(200.0, 0.5, 16000), 16000, "wav")
    )
    lines = [json.dumps({"audio": "local.wav", "captions": ["a local clip"]})]
    lines += [
        json.dumps({"audio": url, "id": f"r{i}", "captions": [f"fetched clip {i}"]})
        for i, url in enumerate(rows)
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    doc = {
        "corpus": "web",
        "options": {
            "shard_size": 4,
            "max_file_bytes": 2_000_000,
            "split_proportions": {"train": 1.0},
            "fetch": {
                "retries": 0,
                "backoff_s": 0.01,
                "read_timeout_s": 5.0,
                "allow_private_networks": True,  # the server is on 127.0.0.1
                **fetch,
            },
        },
        "sources": [
            {
                "name": "web",
                "adapter": "generic",
                "manifest": "m.jsonl",
                "audio_root": "audio",
                "allowed_schemes": ["http"],
                "allowed_hosts": ["127.0.0.1"],
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    return str(tmp_path / "spec.yaml")


def _status(out: Path) -> pd.DataFrame:
    return pd.concat(pd.read_parquet(p) for p in sorted((out / "fetch" / "status" / "web").glob("*.parquet")))


def _shard_bytes(out: Path) -> dict[str, bytes]:
    keep = ("webdataset", "parquet", "rejects")
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] in keep
    }


def test_a_run_fetches_rejects_what_fails_and_a_rerun_fetches_nothing_twice(tmp_path, files):
    with FetchServer(files) as server:
        good = [server.url(f"/audio/{name}") for name in files]
        bad = [server.url("/status/404"), server.url("/huge"), server.url("/500-until/1/clip0.wav")]
        foreign = server.url("/audio/clip0.wav", host="localhost")
        spec = _spec(tmp_path, good + bad + [foreign], server)
        out = tmp_path / "out"
        s = run_corpus(spec, str(out), [RUNNER])
        assert s["accounting_ok"] and (s["inputs"], s["samples"]) == (11, 7)
        assert s["rejects_by_code"] == {"host_not_allowed": 1, "http_error": 1, "too_large": 1, "url_gone": 1}
        assert s["stages"]["fetch"]["total"]["ok"] == 6 and s["stages"]["fetch"]["total"]["failed"] == 3
        printed = format_report(RunSummary.from_json(s))
        assert "  fetch: ok 6, cached 0, failed 3, deferred 0 (status tables under" in printed
        rejects = [
            json.loads(x) for x in (out / "rejects" / "manifest" / "web.jsonl").read_text().splitlines()
        ]
        fetch_rejects = {r["path"]: (r["stage"], r["code"]) for r in rejects if r["stage"] == "fetch"}
        assert fetch_rejects == {
            bad[0]: ("fetch", "url_gone"),
            bad[1]: ("fetch", "too_large"),
            bad[2]: ("fetch", "http_error"),
        }
        status = _status(out)
        assert len(status) == 9 and sorted(status["url"]) == sorted(good + bad)  # one row per URL row
        assert set(status[status.status == "ok"]["digest"].str.len()) == {64}
        requests_before = server.counts()

        again = run_corpus(spec, str(out), [RUNNER])
        assert (again["samples"], again["rejects_by_code"]) == (s["samples"], s["rejects_by_code"])
        assert server.counts() == requests_before  # nothing fetched twice, failures kept
        assert sorted(_status(out)["status"]) == ["cached"] * 6 + ["failed"] * 3

        retried = run_corpus(spec, str(out), [RUNNER], retry_failed=True)
        assert retried["samples"] == 8 and retried["rejects_by_code"]["too_large"] == 1
        assert server.count("/500-until/1/clip0.wav") == 2 and server.count("/status/404") == 2
        assert all(server.count(f"/audio/{n}") == 1 for n in files)


def test_sigkill_during_fetch_then_rerun(tmp_path, files, capsys):
    """Killed mid-fetch: no URL whose download had completed is fetched again, and the rerun's
    shards are the bytes of an uninterrupted run's."""
    with FetchServer(files, slow_s=0.04) as server:
        rows = [server.url(f"/slow/{name}") for name in files]
        spec = _spec(tmp_path, rows, server, connections=1)
        out = tmp_path / "killed"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "clap_corpus.pipeline",
                "fetch",
                "--spec",
                spec,
                "--output",
                str(out),
                RUNNER,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        entries = out / "fetch" / "cache" / "urls"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(entries.rglob("*.json"))) < 2:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        done = [json.loads(p.read_text())["url"] for p in entries.rglob("*.json")]
        assert 2 <= len(done) < len(rows), "the kill came too late to test anything"
        assert not list((out / "fetch" / "status").rglob("*.parquet"))  # the shard never finished

        assert main(["fetch", "--spec", spec, "--output", str(out), RUNNER]) == 0  # the fetch, resumed
        printed = capsys.readouterr().out
        assert f"{'total':<24}{len(files) - len(done):>8}{len(done):>8}{0:>8}" in printed, printed
        for url in done:
            assert server.count(url.split(str(server.port), 1)[1]) == 1, url
        fetched = server.counts()
        resumed = run_corpus(spec, str(out), [RUNNER])
        assert resumed["accounting_ok"] and resumed["samples"] == len(files) + 1
        assert server.counts() == fetched  # the run found every URL in the cache

        clean = tmp_path / "clean"
        assert main(["run", "--spec", spec, "--output", str(clean), RUNNER]) == 0
    assert _shard_bytes(out) == _shard_bytes(clean)


def test_readme_fetch_block_states_the_defaults():
    section = docs_page("fetching.md")
    block = next(b for b in section.split("```yaml\n")[1:] if b.startswith("options:\n  fetch:"))
    written = yaml.safe_load(block.split("```", 1)[0])["options"]["fetch"]
    from clap_corpus.transforms.fetch.config import FetchOptions

    assert FetchOptions(**written) == FetchOptions()
    assert set(written) == set(FetchOptions.__dataclass_fields__)


def test_the_fetch_stage_translates_for_dataflow(tmp_path):
    """A spec with URL sources: the fetch stage is in the Dataflow graph, its group key deterministic."""
    from apache_beam.runners import pipeline_context
    from test_dataflow import _labels, translate

    from clap_corpus.pipeline.spec.corpus import parse_spec
    from clap_corpus.pipeline.stages.graph import BuildCorpus

    doc = {
        "corpus": "web",
        "sources": [
            {
                "name": "web",
                "adapter": "generic",
                "manifest": "gs://my-bucket/web/urls.jsonl",
                "audio_root": "gs://my-bucket/web/audio",
                "allowed_schemes": ["https"],
                "allowed_hosts": ["media.example.org"],
            }
        ],
    }
    spec = parse_spec(doc, "gs://my-bucket/specs/web.yaml")
    out = translate(
        tmp_path, [], build=lambda p: p | "BuildCorpus" >> BuildCorpus(spec, "gs://my-bucket/out")
    )
    names = _labels(out["proto"])
    for stage in ("WebOrNot", "CountWeb", "GroupStatusShard", "FetchShards", "FetchReport"):
        assert any(
            n.startswith(f"BuildCorpus/Fetch/{stage}") or n.startswith(f"BuildCorpus/{stage}") for n in names
        )
    proto = out["proto"]
    context = pipeline_context.PipelineContext(proto.components)
    gbk = names["BuildCorpus/Fetch/GroupStatusShard"]
    coder = context.coders.get_by_id(proto.components.pcollections[next(iter(gbk.inputs.values()))].coder_id)
    assert coder.key_coder().is_deterministic()


def test_retry_failed_is_an_option_of_run_and_fetch():
    from clap_corpus.pipeline.cli.main import build_parser

    parser = build_parser()
    for command in ("run", "fetch"):
        args, extra = parser.parse_known_args(
            [command, "--spec", "s.yaml", "--output", "o", "--retry-failed"]
        )
        assert args.retry_failed and not extra
        args, _ = parser.parse_known_args([command, "--spec", "s.yaml", "--output", "o"])
        assert not args.retry_failed


def test_url_rows_are_checked_for_host_and_form_when_read(tmp_path):
    from clap_corpus.manifests.source import PathRejected, SourceSpec, resolve_audio_path

    source = SourceSpec(
        name="s",
        adapter="generic",
        audio_root=str(tmp_path),
        allowed_schemes=("http", "https"),
        allowed_hosts=("media.example.org",),
    )
    assert (
        resolve_audio_path(source, " https://media.example.org/a.mp3 ") == "https://media.example.org/a.mp3"
    )
    for url, code in (
        ("https://evil.example.org/a.mp3", "host_not_allowed"),
        ("https://MEDIA.example.org.evil.net/a.mp3", "host_not_allowed"),
        ("http://[::1/a.mp3", "bad_path"),
        ("ftp://media.example.org/a.mp3", "scheme_not_allowed"),
    ):
        with pytest.raises(PathRejected) as e:
            resolve_audio_path(source, url)
        assert e.value.code == code, url
