"""Freesound previews through an imitation of the API on 127.0.0.1: the token, the daily cap (stop
cleanly, resume the next day from the status table), and a freesound-adapter run."""

from __future__ import annotations

import json

import pytest
import yaml
from fetch_server import FetchServer

from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.transforms.fetch import status as st
from clap_corpus.transforms.fetch.batch import FetchItem, ShardFetcher
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions, FreesoundOptions
from clap_corpus.transforms.fetch.freesound import today
from clap_corpus.transforms.fetch.http import FetchPolicy

IDS = ("101", "202", "303", "404", "505")


@pytest.fixture(scope="module")
def previews() -> dict[str, bytes]:
    return {f"{i}.ogg": synth.encode_audio(synth.tone(200.0 + int(i), 0.5, 44100), 44100, "ogg") for i in IDS}


def _fetcher(tmp_path, limit: int, env: dict[str, str]) -> ShardFetcher:
    options = FetchOptions(
        retries=0,
        allow_private_networks=True,  # the imitation API is on 127.0.0.1
        freesound=FreesoundOptions(api_host="127.0.0.1", daily_limit=limit),
    )
    return ShardFetcher(
        options, ContentCache(str(tmp_path / "cache")), {"fs": FetchPolicy(options)}, environ=env
    )


def _items(server) -> list[FetchItem]:
    return [
        FetchItem("fs", n, f"k{i}", server.url(f"/freesound/apiv2/sounds/{i}/")) for n, i in enumerate(IDS, 1)
    ]


def test_previews_with_the_token_and_the_daily_cap_then_the_next_day(tmp_path, previews):
    env = {"FREESOUND_TOKEN": "secret-token"}
    with FetchServer(previews) as server:
        first = _fetcher(tmp_path, 3, env).run(_items(server), {})
        assert [o.status.status for o in first] == [st.OK] * 3 + [st.DEFERRED] * 2
        assert {o.status.code for o in first[3:]} == {"download_cap"}
        for o in first[:3]:
            name = o.item.url.rstrip("/").rsplit("/", 1)[1] + ".ogg"
            with open(o.object, "rb") as f:
                assert f.read() == previews[name]
        assert server.freesound_calls == 3
        # the token goes to the API only, never with the preview
        assert all(
            h.get("Authorization") == "Token secret-token"
            for p, h in server.log
            if p.startswith("/freesound")
        )
        assert not any("Authorization" in h for p, h in server.log if p.startswith("/audio"))
        counter = tmp_path / "cache" / "freesound" / f"requests-{today()}.json"
        assert json.loads(counter.read_text()) == {"requests": 3}

        previous = {o.item.url: o.status for o in first}
        same_day = _fetcher(tmp_path, 3, env).run(_items(server), previous)
        assert [o.status.status for o in same_day] == [st.CACHED] * 3 + [st.DEFERRED] * 2
        assert server.freesound_calls == 3  # stopped cleanly: no request over the cap

        counter.rename(counter.with_name("requests-1999-12-31.json"))  # a day has passed
        next_day = _fetcher(tmp_path, 3, env).run(_items(server), {o.item.url: o.status for o in same_day})
        assert [o.status.status for o in next_day] == [st.CACHED] * 3 + [st.OK] * 2
        assert server.freesound_calls == 5 and json.loads(counter.read_text()) == {"requests": 2}


def test_the_apis_own_429_stops_the_day_and_a_missing_token_says_so(tmp_path, previews):
    with FetchServer(previews) as server:
        server.freesound_cap = 2
        out = _fetcher(tmp_path, 0, {"FREESOUND_TOKEN": "secret-token"}).run(_items(server)[:3], {})
        statuses = sorted(o.status.status for o in out)
        assert statuses == [st.DEFERRED, st.OK, st.OK]
        (deferred,) = [o.status for o in out if o.status.status == st.DEFERRED]
        assert (deferred.code, deferred.error_class, deferred.http_code) == ("download_cap", "api_429", 429)
        server.freesound_cap = None
        no_token = _fetcher(tmp_path / "b", 0, {}).run(_items(server)[3:4], {})
        assert (no_token[0].status.code, no_token[0].status.error_class) == ("fetch_failed", "no_token")
        assert "FREESOUND_TOKEN" in no_token[0].status.error


def test_a_freesound_source_run_defers_past_the_cap(tmp_path, previews, monkeypatch):
    monkeypatch.setenv("FREESOUND_TOKEN", "secret-token")
    with FetchServer(previews) as server:
        rows = [{"id": i, "name": f"tone {i}.wav", "tags": "tone,test", "username": "u"} for i in IDS]
        (tmp_path / "fs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        doc = {
            "corpus": "fs",
            "options": {
                "shard_size": 8,
                "split_proportions": {"train": 1.0},
                "fetch": {
                    "retries": 0,
                    "allow_private_networks": True,
                    "freesound": {"api_host": "127.0.0.1", "daily_limit": 4},
                },
            },
            "sources": [
                {
                    "name": "fs",
                    "adapter": "freesound",
                    "manifest": "fs.jsonl",
                    "audio_root": "audio",
                    "allowed_schemes": ["http"],
                    "allowed_hosts": ["127.0.0.1"],
                    "options": {"file_pattern": server.url("/freesound/apiv2/sounds/{id}/")},
                }
            ],
        }
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
        s = run_corpus(str(tmp_path / "spec.yaml"), str(tmp_path / "out"), ["--runner=FnApiRunner"])
    assert s["accounting_ok"] and s["samples"] == 4 and s["rejects_by_code"] == {"download_cap": 1}
    assert s["stages"]["fetch"]["total"]["deferred"] == 1
