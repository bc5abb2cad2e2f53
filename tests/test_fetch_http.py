"""The HTTP fetcher and the shard fetcher against a real server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
from fetch_server import FetchServer

from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.fetch import status as st
from clap_corpus.transforms.fetch.batch import FetchItem, ShardFetcher
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.http import FetchPolicy, backoff_seconds, retry_after_seconds

# The servers are on 127.0.0.1: these tests lift the private-address rule.
FAST = dict(
    backoff_s=0.01, max_backoff_s=0.05, connect_timeout_s=2.0, read_timeout_s=2.0, allow_private_networks=True
)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    t = np.arange(48_000) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return {
        "a.flac": synth.encode_audio(tone, 48_000, "flac"),
        "b.mp3": synth.encode_audio(tone, 44_100, "mp3"),
        "c.ogg": synth.encode_audio(tone, 44_100, "ogg"),
    }


@pytest.fixture
def server(files):
    with FetchServer(files, slow_s=0.05) as s:
        yield s


def _fetch(server, tmp_path, paths, *, previous=None, retry_failed=False, hosts=(), max_bytes=None, **opts):
    options = FetchOptions(**(FAST | opts))
    policy = FetchPolicy(options, frozenset({"http", "https"}), tuple(hosts), max_bytes)
    fetcher = ShardFetcher(
        options, ContentCache(str(tmp_path / "cache")), {"s": policy}, retry_failed=retry_failed
    )
    items = [
        FetchItem("s", i + 1, f"k{i}", server.url(p) if p.startswith("/") else p) for i, p in enumerate(paths)
    ]
    return {o.item.url: o for o in fetcher.run(items, previous or {})}


def _one(out):
    (o,) = out.values()
    return o


def _no_temporaries(tmp_path):
    tmp = tmp_path / "cache" / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir())


def test_a_file_is_fetched_once_into_the_content_addressed_cache(server, files, tmp_path):
    o = _one(_fetch(server, tmp_path, ["/audio/a.flac"]))
    digest = hashlib.sha256(files["a.flac"]).hexdigest()
    assert (o.status.status, o.status.http_code, o.status.attempts) == (st.OK, 200, 1)
    assert (o.status.digest, o.status.bytes) == (digest, len(files["a.flac"]))
    assert (
        o.object.endswith(f"objects/{digest[:2]}/{digest}") and Path(o.object).read_bytes() == files["a.flac"]
    )
    again = _one(_fetch(server, tmp_path, ["/audio/a.flac"]))
    assert (again.status.status, again.status.attempts, again.object) == (st.CACHED, 0, o.object)
    assert server.count("/audio/a.flac") == 1
    _no_temporaries(tmp_path)


@pytest.mark.parametrize(
    "path, code, error_class, attempts",
    [
        ("/status/404", "url_gone", "http_404", 1),
        ("/status/410", "url_gone", "http_410", 1),
        ("/status/403", "http_error", "http_403", 1),
        ("/status/500", "http_error", "http_500", 3),  # retried: retries=2
        ("/loop/0", "redirect_refused", "too_many_redirects", 1),
        ("/to-file", "redirect_refused", "redirect_refused", 1),
        ("/to-nonsense", "fetch_failed", "unexpected", 1),
    ],
)
def test_failures_get_a_code_an_error_class_and_their_attempts(
    server, tmp_path, path, code, error_class, attempts
):
    o = _one(_fetch(server, tmp_path, [path], retries=2, max_redirects=4))
    assert (o.status.status, o.status.code, o.status.error_class, o.status.attempts) == (
        st.FAILED,
        code,
        error_class,
        attempts,
    )
    assert o.object is None
    if path.startswith("/status/"):
        assert o.status.http_code == int(path.rsplit("/", 1)[1])
    if path == "/loop/0":
        assert server.count("/loop/4") == 1 and server.count("/loop/5") == 0  # stopped at max_redirects
    _no_temporaries(tmp_path)


def test_500s_then_success_is_retried_with_backoff(server, files, tmp_path):
    o = _one(_fetch(server, tmp_path, ["/500-until/2/b.mp3"], retries=3))
    assert (o.status.status, o.status.attempts) == (st.OK, 3)
    assert Path(o.object).read_bytes() == files["b.mp3"]


def test_429_waits_what_retry_after_says(server, tmp_path):
    t0 = time.monotonic()
    o = _one(_fetch(server, tmp_path, ["/429-once/a.flac"], retries=1))
    assert (o.status.status, o.status.attempts) == (st.OK, 2)
    assert time.monotonic() - t0 >= 0.95  # Retry-After: 1, where the backoff alone would wait ~0.01 s
    # a Retry-After longer than max_retry_after_s fails at once instead of waiting
    o = _one(_fetch(server, tmp_path, ["/429-once/b.mp3"], retries=1, max_retry_after_s=0.5))
    assert (o.status.code, o.status.attempts, o.status.http_code) == ("rate_limited", 1, 429)


def test_slow_bodies_stalls_and_resets_are_network_errors(server, files, tmp_path):
    slow = _one(_fetch(server, tmp_path, ["/slow/a.flac"], retries=0, total_timeout_s=0.3))
    assert (slow.status.code, slow.status.error_class) == ("network_error", "total_timeout")
    stall = _one(_fetch(server, tmp_path, ["/stall/a.flac"], retries=0, read_timeout_s=0.3))
    assert (stall.status.code, stall.status.error_class) == ("network_error", "timeout")
    reset = _one(_fetch(server, tmp_path, ["/reset/a.flac"], retries=1))
    assert (reset.status.code, reset.status.error_class, reset.status.attempts) == (
        "network_error",
        "reset",
        2,
    )
    once = _one(_fetch(server, tmp_path, ["/reset-once/c.ogg"], retries=1))
    assert (once.status.status, once.status.attempts) == (st.OK, 2)
    assert Path(once.object).read_bytes() == files["c.ogg"]  # the reset attempt left nothing behind
    _no_temporaries(tmp_path)


def test_the_byte_cap_is_counted_while_streaming(server, files, tmp_path):
    huge = _one(_fetch(server, tmp_path, ["/huge"], retries=0, max_bytes=1 << 20))
    assert (huge.status.code, huge.status.error_class) == ("too_large", "too_large")
    assert "while streaming" in huge.status.error
    # a declared length over the cap is refused before the body
    big = _one(_fetch(server, tmp_path, ["/audio/a.flac"], retries=0, max_bytes=1000))
    assert big.status.code == "too_large" and "Content-Length" in big.status.error
    _no_temporaries(tmp_path)


def test_a_body_longer_than_its_content_length_is_cut_there(server, files, tmp_path):
    out = _fetch(server, tmp_path, ["/longer/b.mp3", "/audio/c.ogg"], connections=1)
    longer = out[server.url("/longer/b.mp3")]
    assert Path(longer.object).read_bytes() == files["b.mp3"]
    assert out[server.url("/audio/c.ogg")].status.status == st.OK  # the connection after it is sound


def test_redirects_stay_on_allowed_hosts_and_never_carry_credentials(server, files, tmp_path):
    refused = _one(_fetch(server, tmp_path, ["/to-host/localhost/audio/a.flac"], hosts=["127.0.0.1"]))
    assert refused.status.code == "redirect_refused" and "host 'localhost'" in refused.status.error
    assert server.count("/audio/a.flac") == 0
    # allowed: followed, but the Authorization and Cookie headers stay with the URL's own host
    options = FetchOptions(**FAST)
    policy = FetchPolicy(options, frozenset({"http"}), ("127.0.0.1", "localhost"))
    from clap_corpus.transforms.fetch.http import fetch, make_pool

    sink = ContentCache(str(tmp_path / "c2")).pending()
    secret = {"Authorization": "Token abc", "Cookie": "session=1"}
    got = fetch(
        server.url("/to-host/localhost/audio/a.flac"), policy, sink, make_pool(options), headers=secret
    )
    sink.commit(got.url)
    assert got.url == server.url("/audio/a.flac", host="localhost")
    first = server.headers_for("/to-host/localhost/audio/a.flac")[-1]
    (second,) = server.headers_for("/audio/a.flac")
    assert first.get("Authorization") == "Token abc" and first.get("Cookie") == "session=1"
    assert "Authorization" not in second and "Cookie" not in second


def test_per_host_concurrency_is_capped(server, tmp_path):
    server.slow_s = 0.02
    paths = [f"/slow/{n}?{i}" for i in range(4) for n in ("a.flac", "b.mp3")]
    out = _fetch(server, tmp_path, paths, connections=8, max_per_host=2)
    assert all(o.status.status == st.OK for o in out.values())
    assert server.max_active == 2


def test_failed_rows_stay_failed_unless_retry_failed(server, files, tmp_path):
    url = server.url("/500-until/1/c.ogg")
    first = _one(_fetch(server, tmp_path, ["/500-until/1/c.ogg"], retries=0))
    assert first.status.status == st.FAILED
    previous = {url: first.status}
    kept = _one(_fetch(server, tmp_path, ["/500-until/1/c.ogg"], previous=previous, retries=0))
    assert (kept.status.status, kept.status.attempts) == (st.FAILED, 0) and server.count(
        "/500-until/1/c.ogg"
    ) == 1
    retried = _one(_fetch(server, tmp_path, ["/500-until/1/c.ogg"], previous=previous, retry_failed=True))
    assert retried.status.status == st.OK and server.count("/500-until/1/c.ogg") == 2


def test_the_status_table_round_trips_through_parquet(server, tmp_path):
    out = _fetch(server, tmp_path, ["/audio/a.flac", "/status/404"], retries=0)
    path = str(tmp_path / "status" / "000000.parquet")
    st.write_status(path, [o.status for o in out.values()])
    import pandas as pd

    df = pd.read_parquet(path)
    assert list(df.columns) == [f.name for f in st.SCHEMA]
    assert sorted(df["status"]) == ["failed", "ok"] and df["row"].tolist() == [1, 2]
    assert st.read_status(path) == {o.item.url: o.status for o in out.values()}


def test_backoff_is_exponential_capped_and_jittered_by_url():
    options = FetchOptions(backoff_s=1.0, max_backoff_s=8.0)
    a = [backoff_seconds("http://h/a", n, options) for n in range(1, 6)]
    assert a == [backoff_seconds("http://h/a", n, options) for n in range(1, 6)]  # reproducible
    for n, wait in enumerate(a, start=1):
        base = min(8.0, 2.0 ** (n - 1))
        assert 0.5 * base <= wait < 1.5 * base
    assert a != [backoff_seconds("http://h/b", n, options) for n in range(1, 6)]
    assert retry_after_seconds("7") == 7.0 and retry_after_seconds("soon") is None
    assert 29 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) <= 31


def test_a_killed_download_leaves_no_entry(tmp_path):
    cache = ContentCache(str(tmp_path / "cache"))
    p = cache.pending()
    p.write(b"partial")
    assert cache.lookup("http://h/x") is None  # written, never committed: not obtained
    assert os.listdir(tmp_path / "cache") == ["tmp"]


def test_the_per_host_rate_limit_spaces_requests(server, tmp_path):
    t0 = time.monotonic()
    out = _fetch(
        server, tmp_path, [f"/audio/a.flac?{i}" for i in range(6)], requests_per_second_per_host=10.0
    )
    assert all(o.status.status == st.OK for o in out.values())
    assert time.monotonic() - t0 >= 0.5  # six starts at 10 per second: the last one 0.5 s after the first


def test_the_cache_works_on_an_object_store(server, files, tmp_path):
    from test_cloud_paths import BUCKET  # registers the memfs:// Beam FileSystem, the cloud stand-in

    options = FetchOptions(**FAST)
    cache = ContentCache(f"{BUCKET}/fetch-cache-{tmp_path.name}")
    fetcher = ShardFetcher(options, cache, {"s": FetchPolicy(options)})
    item = FetchItem("s", 1, "k", server.url("/audio/b.mp3"))
    (o,) = fetcher.run([item], {})
    assert o.status.status == st.OK and o.object.startswith(f"{BUCKET}/fetch-cache-")
    from clap_corpus.transforms import storage

    assert storage.read_bytes(o.object) == files["b.mp3"]
    (again,) = ShardFetcher(options, cache, {"s": FetchPolicy(options)}).run([item], {})
    assert again.status.status == st.CACHED and server.count("/audio/b.mp3") == 1


def test_a_killed_download_is_swept_once_it_is_stale(tmp_path):
    cache = ContentCache(str(tmp_path / "cache"))
    assert cache.sweep(60) == 0  # no tmp/ yet
    dead, live = cache.pending(), cache.pending()
    dead.write(b"left by a killed task")
    live.write(b"still downloading")
    dead._file.flush()
    two_hours_ago = time.time() - 7200
    os.utime(dead.tmp, (two_hours_ago, two_hours_ago))
    assert cache.sweep(3600) == 1
    assert not os.path.exists(dead.tmp) and os.path.exists(live.tmp)
    live.commit("http://h/live")
    assert cache.lookup("http://h/live").bytes == len(b"still downloading")
