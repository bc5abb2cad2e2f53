"""Fetching that a hostile manifest or server cannot turn against its user (issue 24), against real
servers on 127.0.0.1-127.0.0.9 (each address one host), one of them over TLS with a certificate made
here: one reading of every URL, a wall-clock deadline, per-hop host limits, credentials kept to their
origin, a cache that checks what it holds, private networks refused, secrets never written."""

from __future__ import annotations

import gzip
import hashlib
import socket
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from fetch_server import FetchServer, self_signed

from clap_corpus.core.urls import SECRET_QUERY_PARAMS, BadURL, parse_web_url, redact_url
from clap_corpus.manifests.source import PathRejected, SourceSpec, resolve_audio_path
from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.fetch import status as st
from clap_corpus.transforms.fetch.batch import FetchItem, ShardFetcher
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions, FreesoundOptions
from clap_corpus.transforms.fetch.http import FetchPolicy, fetch, make_pool

FAST = dict(
    backoff_s=0.01,
    max_backoff_s=0.05,
    connect_timeout_s=2.0,
    read_timeout_s=10.0,
    retries=0,
    allow_private_networks=True,
)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    t = np.arange(48_000) / 48_000
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    return {
        "a.flac": synth.encode_audio(tone, 48_000, "flac"),
        "b.mp3": synth.encode_audio(tone, 44_100, "mp3"),
        "c.ogg": synth.encode_audio(tone, 44_100, "ogg"),
        "101.ogg": synth.encode_audio(tone, 44_100, "ogg"),
        "quiet.wav": synth.encode_audio(np.zeros(48_000, np.float32), 48_000, "wav"),  # gzips to ~0
    }


@pytest.fixture
def server(files):
    with FetchServer(files) as s:
        yield s


@pytest.fixture
def other(files):
    """Another host: 127.0.0.2."""
    with FetchServer(files, host="127.0.0.2") as s:
        yield s


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(cert, monkeypatch):
    """The client trusts the test certificate (and only it)."""
    monkeypatch.setenv("SSL_CERT_FILE", cert[0])
    return cert


def _run(tmp_path, urls, *, hosts=(), max_bytes=None, previous=None, resolve=None, **opts):
    options = FetchOptions(**(FAST | opts))
    policy = FetchPolicy(options, frozenset({"http", "https"}), tuple(hosts), max_bytes)
    fetcher = ShardFetcher(options, ContentCache(str(tmp_path / "cache")), {"s": policy}, resolve=resolve)
    items = [FetchItem("s", i + 1, f"k{i}", u) for i, u in enumerate(urls)]
    return fetcher.run(items, previous or {})


def _to(server: FetchServer, target: str) -> str:
    return server.url(f"/to?u={quote(target, safe='')}")


# -- 1. one reading of every URL --


def test_a_url_two_parsers_read_differently_is_refused_in_a_row_and_in_a_redirect(server, other, tmp_path):
    sneaky = f"http://127.0.0.2:{other.port}\\@127.0.0.1:{server.port}/audio/a.flac"
    row, hop = _run(tmp_path, [sneaky, _to(server, sneaky)], hosts=["127.0.0.1"])
    assert (row.status.code, row.status.error_class) == ("bad_url", "bad_url")
    assert (hop.status.code, hop.status.error_class) == ("redirect_refused", "bad_url")
    assert other.log == []  # nothing reached the host the check never saw
    assert server.count("/audio/a.flac") == 0
    # a manifest row is refused when it is read, with the same rule
    source = SourceSpec(
        name="s",
        adapter="generic",
        audio_root=str(tmp_path),
        allowed_schemes=("http",),
        allowed_hosts=("127.0.0.1",),
    )
    with pytest.raises(PathRejected) as e:
        resolve_audio_path(source, sneaky)
    assert e.value.code == "bad_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.2\\@127.0.0.1/a.wav",
        "http://127.0.0.1 @127.0.0.2/a.wav",
        "http://127.0.0.1%2e/a.wav",
        "http://127.0.0.1\t/a.wav",
        "http://127.0.0.1/a\r\nX-Injected: 1",
    ],
)
def test_urls_that_do_not_read_one_way_are_bad_urls(url):
    with pytest.raises(BadURL):
        parse_web_url(url)
    assert FetchPolicy(FetchOptions(), allowed_hosts=("127.0.0.1",)).refuse(url).startswith("bad URL")


def test_the_freesound_token_goes_only_to_the_host_the_url_names(files, tmp_path):
    """The API request is routed, checked and sent by one reading: a backslash row never reaches
    another host with the token, and a redirect to another port of the same host goes without it."""
    with (
        FetchServer(files) as api,
        FetchServer(files, host="127.0.0.2") as other,
        FetchServer(files) as same_host,  # 127.0.0.1, another port
    ):
        sneaky = f"http://127.0.0.2:{other.port}\\@127.0.0.1:{api.port}/freesound/apiv2/sounds/101/"
        moved = _to(api, same_host.url("/freesound/apiv2/sounds/101/?fields=id,previews"))
        options = FetchOptions(**FAST, freesound=FreesoundOptions(api_host="127.0.0.1", daily_limit=0))
        fetcher = ShardFetcher(
            options,
            ContentCache(str(tmp_path / "cache")),
            {"fs": FetchPolicy(options)},
            environ={"FREESOUND_TOKEN": "secret-token"},
        )
        out = fetcher.run([FetchItem("fs", 1, "k1", sneaky), FetchItem("fs", 2, "k2", moved)], {})
    assert out[0].status.code == "bad_url"
    assert other.log == []
    assert api.headers_for(api.log[0][0])[0]["Authorization"] == "Token secret-token"  # the API itself
    assert same_host.log and all("Authorization" not in h for _, h in same_host.log)
    assert out[1].status.status == st.FAILED  # the other port answered 401 without the token


# -- 2. the deadline --


def test_a_drip_feed_is_cut_off_at_the_deadline_and_the_shard_goes_on(files, tmp_path, trusted):
    """A byte every 0.2 s (each read well inside read_timeout_s) for 30 s, in the body, in the
    headers and over TLS: each stops at total_timeout_s = 2 s, and the other rows are fetched."""
    with (
        FetchServer(files, drip_s=0.2, drip_for=30.0) as server,
        FetchServer(files, drip_s=0.2, drip_for=30.0, tls=trusted) as tls,
    ):
        urls = [
            server.url("/drip/a.flac"),
            server.url("/drip-head"),
            tls.url("/drip/b.mp3"),
            server.url("/audio/a.flac"),
            server.url("/audio/b.mp3"),
            tls.url("/audio/c.ogg"),
        ]
        t0 = time.monotonic()
        out = _run(tmp_path, urls, total_timeout_s=2.0, connections=3)
        took = time.monotonic() - t0
    by = {o.item.url: o.status for o in out}
    for url in urls[:3]:
        assert (by[url].code, by[url].error_class) == ("network_error", "total_timeout"), url
    for url, name in zip(urls[3:], ("a.flac", "b.mp3", "c.ogg"), strict=True):
        assert by[url].status == st.OK and by[url].digest == hashlib.sha256(files[name]).hexdigest()
    assert took < 20.0, took  # the drips would have held it 30 s (and the old code longer)


# -- 3. per-host limits by the host of each hop --


def test_max_per_host_counts_the_host_each_hop_connects_to(files, tmp_path):
    with FetchServer(files, slow_s=0.02) as target:
        redirectors = [FetchServer(files, host=f"127.0.0.{i}") for i in range(2, 10)]
        for r in redirectors:
            r.__enter__()
        try:
            urls = [_to(r, target.url(f"/slow/a.flac?{i}")) for i, r in enumerate(redirectors)]
            out = _run(tmp_path, urls, connections=8, max_per_host=1)
        finally:
            for r in redirectors:
                r.__exit__(None, None, None)
    assert all(o.status.status == st.OK for o in out), [o.status for o in out]
    assert target.max_active == 1  # eight first hosts, one host connected to


def test_the_request_rate_is_counted_for_the_host_of_each_hop(files, tmp_path):
    with FetchServer(files) as target:
        redirectors = [FetchServer(files, host=f"127.0.0.{i}") for i in range(2, 6)]
        for r in redirectors:
            r.__enter__()
        try:
            urls = [_to(r, target.url(f"/audio/b.mp3?{i}")) for i, r in enumerate(redirectors)]
            out = _run(tmp_path, urls, connections=4, requests_per_second_per_host=4.0, max_per_host=7)
        finally:
            for r in redirectors:
                r.__exit__(None, None, None)
    assert all(o.status.status == st.OK for o in out)
    arrivals = sorted(t for _, t in target.times)
    assert len(arrivals) == 4
    gaps = np.diff(arrivals)
    assert gaps.min() >= 0.2, gaps  # 4 per second: a start every 0.25 s at the target, not all at once


# -- 4. credentials stay with their origin --


def test_credentials_go_to_the_same_origin_only(files, tmp_path, trusted):
    secret = {"Authorization": "Token abc", "Cookie": "session=1"}
    options = FetchOptions(**FAST)
    policy = FetchPolicy(options)
    pool = make_pool(options)
    cache = ContentCache(str(tmp_path / "c"))
    with (
        FetchServer(files) as plain,
        FetchServer(files) as plain_other_port,
        FetchServer(files, tls=trusted) as tls,
    ):
        cases = {
            "port": _to(plain, plain_other_port.url("/audio/a.flac")),  # same host, another port
            "downgrade": _to(tls, plain.url("/audio/b.mp3")),  # https -> http, same host
            "same": _to(tls, "/audio/c.ogg"),  # same origin: kept
        }
        for url in cases.values():
            sink = cache.pending()
            fetch(url, policy, sink, pool, headers=secret)
            sink.discard()
        assert plain_other_port.headers_for("/audio/a.flac")[0].get("Authorization") is None
        assert plain_other_port.headers_for("/audio/a.flac")[0].get("Cookie") is None
        assert plain.headers_for("/audio/b.mp3")[0].get("Authorization") is None
        assert plain.headers_for("/audio/b.mp3")[0].get("Cookie") is None
        kept = tls.headers_for("/audio/c.ogg")[0]
        assert (kept.get("Authorization"), kept.get("Cookie")) == ("Token abc", "session=1")


# -- 5. the cache checks what it holds --


def test_a_damaged_cache_object_is_fetched_again_and_counted(server, files, tmp_path):
    (first,) = _run(tmp_path, [server.url("/audio/a.flac")])
    obj = Path(first.object)
    obj.write_bytes(files["a.flac"][: len(files["a.flac"]) // 2])  # cut short on disk
    (again,) = _run(tmp_path, [server.url("/audio/a.flac")])
    assert (again.status.status, again.status.refetched) == (st.OK, "cache_mismatch")
    assert obj.read_bytes() == files["a.flac"] and server.count("/audio/a.flac") == 2
    (third,) = _run(tmp_path, [server.url("/audio/a.flac")])
    assert (third.status.status, third.status.refetched) == (st.CACHED, None)  # sound again
    # altered in place (same length), then the same content fetched from another URL: the fresh,
    # correct download replaces the altered object instead of trusting its name
    altered = bytearray(files["a.flac"])
    altered[-100] ^= 0xFF
    obj.write_bytes(bytes(altered))
    (other_url,) = _run(tmp_path, [server.url("/audio/a.flac?mirror")])
    assert other_url.object == str(obj) and obj.read_bytes() == files["a.flac"]


# -- also: private networks --


def test_private_addresses_are_refused_unless_the_spec_allows_them(server, tmp_path):
    port = server.port
    urls = [
        server.url("/audio/a.flac"),
        f"http://localhost:{port}/audio/a.flac",
        f"http://2130706433:{port}/audio/b.mp3",  # 127.0.0.1 as one number: only resolving shows it
        f"http://[::ffff:127.0.0.1]:{port}/audio/c.ogg",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
        "http://10.1.2.3/a.wav",
    ]
    out = _run(tmp_path, urls, allow_private_networks=False, connect_timeout_s=1.0)
    for o in out:
        assert (o.status.code, o.status.error_class) == ("private_address", "private_address"), o.status
        assert "allow_private_networks" in o.status.error
    assert server.log == []
    kinds = [o.status.error.split(", a ", 1)[1].split(" address")[0] for o in out]
    assert kinds == ["loopback", "loopback", "loopback", "loopback", "link-local", "private"]
    allowed = _run(tmp_path / "b", urls[:2], allow_private_networks=True)
    assert [o.status.status for o in allowed] == [st.OK, st.OK]


def test_the_check_is_on_the_address_the_name_resolves_to_once(server, tmp_path):
    """A harmless-looking name that resolves to loopback is refused, by the address it gave; it is
    resolved once per connection, and the connection goes to the checked address (no second lookup
    for DNS to answer differently). The resolver here is a hosts table for an invented name."""
    calls = []

    def resolve(host, port, family=0, kind=0, *rest):
        if host == "media.example.test":
            calls.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return socket.getaddrinfo(host, port, family, kind, *rest)

    url = f"http://media.example.test:{server.port}/audio/a.flac"
    (refused,) = _run(tmp_path, [url], allow_private_networks=False, resolve=resolve)
    assert refused.status.code == "private_address" and "127.0.0.1, a loopback" in refused.status.error
    assert calls == ["media.example.test"] and server.log == []
    (allowed,) = _run(tmp_path / "b", [url], allow_private_networks=True, resolve=resolve)
    assert allowed.status.status == st.OK and calls == ["media.example.test"] * 2


# -- also: HTML pages, Content-Encoding, fragments, IDNA --


def test_gzip_bodies_are_decoded_under_the_cap_and_other_encodings_are_named(server, files, tmp_path):
    gz, capped, br = _run(
        tmp_path,
        [server.url("/gzip/a.flac"), server.url("/gzip/quiet.wav"), server.url("/encoded/br/c.ogg")],
        max_bytes=len(files["a.flac"]),
    )
    assert gz.status.status == st.OK and Path(gz.object).read_bytes() == files["a.flac"]
    assert gz.status.digest == hashlib.sha256(files["a.flac"]).hexdigest()
    # quiet.wav compresses far under the cap but decodes past it: the cap is on what is decoded
    assert len(gzip.compress(files["quiet.wav"])) < len(files["a.flac"]) < len(files["quiet.wav"])
    assert capped.status.code == "too_large" and "decoded" in capped.status.error
    assert (br.status.code, br.status.error_class) == ("fetch_failed", "content_encoding")
    assert "'br'" in br.status.error


def test_urls_that_differ_in_their_fragment_are_fetched_once(server, tmp_path):
    out = _run(tmp_path, [server.url("/audio/a.flac#one"), server.url("/audio/a.flac#two")])
    assert [o.status.status for o in out] == [st.OK, st.OK] and out[0].object == out[1].object
    assert server.count("/audio/a.flac") == 1
    assert {o.status.url for o in out} == {server.url("/audio/a.flac")}


def test_host_names_are_compared_in_idna_form(server, tmp_path):
    for allowed, url in (
        ("bücher.test", "http://xn--bcher-kva.test/a.mp3"),
        ("xn--bcher-kva.test", "http://BÜCHER.test/a.mp3"),
        ("Example.ORG.", "http://example.org/a.mp3"),
    ):
        source = SourceSpec(
            name="s",
            adapter="generic",
            audio_root=str(tmp_path),
            allowed_schemes=("http",),
            allowed_hosts=(allowed,),
        )
        assert resolve_audio_path(source, url) == url
        assert FetchPolicy(FetchOptions(), allowed_hosts=(allowed,)).refuse(url) == ""
    # and fetched from the host the A-label names (a hosts table stands in for DNS)

    def resolve(host, port, family=0, kind=0, *rest):
        if host == "xn--bcher-kva.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return socket.getaddrinfo(host, port, family, kind, *rest)

    (o,) = _run(
        tmp_path,
        [f"http://BÜCHER.test:{server.port}/audio/a.flac"],
        hosts=["bücher.test"],
        resolve=resolve,
    )
    assert o.status.status == st.OK
    assert server.headers_for("/audio/a.flac")[0]["Host"] == f"xn--bcher-kva.test:{server.port}"


# -- also: redaction --


def test_redaction_drops_userinfo_and_secret_parameters_and_keeps_keys_stable():
    a = "https://bob:hunter2@b.test/x/a.wav?X-Amz-Date=20240101T000000Z&X-Amz-Signature=abc&v=2#t=1"
    b = "https://b.test/x/a.wav?X-Amz-Date=20250505T000000Z&X-Amz-Signature=def&v=2#t=1"
    assert (
        redact_url(a)
        == redact_url(b)
        == ("https://b.test/x/a.wav?X-Amz-Date=REDACTED&X-Amz-Signature=REDACTED&v=2#t=1")
    )
    assert (
        redact_url("http://h/a?TOKEN=1&tokens=2&key=3") == "http://h/a?TOKEN=REDACTED&tokens=2&key=REDACTED"
    )
    assert redact_url("http://h/a?auth=1", ("auth",)) == "http://h/a?auth=REDACTED"
    assert redact_url("http://h/a?key=obj.wav", ()) == "http://h/a?key=obj.wav"  # configurable
    assert "x-amz-signature" in SECRET_QUERY_PARAMS and "sig" in SECRET_QUERY_PARAMS
    assert redact_url("http://u:p\\@h/a") == "http://h/a"  # whatever the userinfo holds


def test_errors_and_status_rows_never_carry_a_secret(server, tmp_path):
    refused, gone = _run(
        tmp_path,
        [
            _to(server, "file:///etc/passwd?token=t0ken"),  # the server's Location holds a secret
            server.url("/status/404?X-Amz-Signature=s1gnature&token=t0ken").replace("://", "://u:pw@"),
        ],
    )
    assert refused.status.code == "redirect_refused" and "token=REDACTED" in refused.status.error
    assert gone.status.code == "url_gone"
    assert gone.status.url == server.url("/status/404?X-Amz-Signature=REDACTED&token=REDACTED")
    assert "t0ken" not in refused.status.error
    assert not any(s in str(gone.status) for s in ("t0ken", "s1gnature", "pw@")), gone.status


# -- in real runs (FnApiRunner) --

RUNNER = "--runner=FnApiRunner"


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    return {
        f"clip{i}.{fmt}": synth.encode_audio(synth.tone(300.0 + 97 * i, 0.5, 16000), 16000, fmt)
        for i, fmt in enumerate(("wav", "flac", "mp3", "ogg"))
    }


def _url_spec(tmp_path: Path, urls: list[str], **fetch_options) -> str:
    """A generic source of URL rows without an id column (the URL is the id)."""
    import yaml

    rows = [json_line({"audio": u, "captions": [f"clip {i}"]}) for i, u in enumerate(urls)]
    (tmp_path / "m.jsonl").write_text("".join(rows))
    (tmp_path / "audio").mkdir(exist_ok=True)
    doc = {
        "corpus": "web",
        "options": {
            "shard_size": 4,
            "split_proportions": {"train": 1.0},
            "fetch": {"retries": 0, "backoff_s": 0.01, **fetch_options},
        },
        "sources": [
            {
                "name": "web",
                "adapter": "generic",
                "manifest": "m.jsonl",
                "audio_root": "audio",
                "allowed_schemes": ["http"],
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    return str(tmp_path / "spec.yaml")


def json_line(d: dict) -> str:
    import json

    return json.dumps(d) + "\n"


def _every_byte(folder: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_a_run_writes_no_secret_and_keeps_keys_across_re_signed_urls(tmp_path, clips, caplog):
    import pandas as pd

    from clap_corpus.pipeline.launch.run import run_corpus

    caplog.set_level("DEBUG")
    secrets = ["hunter2", "s3cr3t", "AKIAEXAMPLE", "t0ken404", "l0cati0n"]
    with FetchServer(clips) as server:

        def urls(signature: str, password: str, date: str) -> list[str]:
            return [
                server.url("/audio/clip0.wav").replace("://", f"://bob:{password}@"),
                server.url(
                    f"/audio/clip1.flac?X-Amz-Credential=AKIAEXAMPLE%2F{date}&X-Amz-Date={date}"
                    f"&X-Amz-Signature={signature}&v=1"
                ),
                server.url("/status/404?token=t0ken404"),
                server.url("/to-file-signed"),
            ]

        spec = _url_spec(tmp_path, urls("s3cr3t", "hunter2", "20240101"), allow_private_networks=True)
        out = tmp_path / "out"
        s = run_corpus(spec, str(out), [RUNNER])
        assert s["accounting_ok"] and s["samples"] == 2
        assert s["rejects_by_code"] == {"url_gone": 1, "redirect_refused": 1}
        written = _every_byte(out)
        for secret in secrets:
            assert secret.encode() not in written, secret
            assert secret not in caplog.text, secret
        assert b"REDACTED" in written
        keys = sorted(pd.read_parquet(out / "parquet" / "train")["key"])
        requests = server.counts()

        # the same objects, signed again: same keys, nothing fetched again, still nothing secret
        rerun = tmp_path / "spec2"
        rerun.mkdir()
        spec2 = _url_spec(rerun, urls("n3wsig", "sw0rdfish", "20250505"), allow_private_networks=True)
        again = run_corpus(spec2, str(out), [RUNNER])
        assert again["samples"] == 2
        assert sorted(pd.read_parquet(out / "parquet" / "train")["key"]) == keys
        assert server.counts() == requests
        written = _every_byte(out)
        for secret in [*secrets, "n3wsig", "sw0rdfish"]:
            assert secret.encode() not in written, secret


def test_private_addresses_are_rejected_in_a_run_by_default(tmp_path, clips):
    from clap_corpus.pipeline.launch.run import run_corpus

    with FetchServer(clips) as server:
        spec = _url_spec(tmp_path, [server.url("/audio/clip0.wav"), "http://169.254.169.254/latest/"])
        s = run_corpus(spec, str(tmp_path / "out"), [RUNNER])
    assert s["accounting_ok"] and s["samples"] == 0 and s["rejects_by_code"] == {"private_address": 2}
    assert server.log == []
    reasons = [
        r["reason"]
        for r in map(
            json_loads, (tmp_path / "out" / "rejects" / "manifest" / "web.jsonl").read_text().splitlines()
        )
    ]
    assert all("allow_private_networks: true" in r for r in reasons), reasons


def json_loads(text: str) -> dict:
    import json

    return json.loads(text)


def test_retry_failed_refetches_what_the_decoder_rejected_and_a_damaged_object_is_counted(tmp_path, clips):
    from clap_corpus.pipeline.cli.fetch import fetch_corpus
    from clap_corpus.pipeline.launch.run import run_corpus

    with FetchServer(clips) as server:
        spec = _url_spec(
            tmp_path,
            [server.url("/html-once/clip0.wav"), server.url("/audio/clip1.flac")],
            allow_private_networks=True,
        )
        out = tmp_path / "out"
        first = run_corpus(spec, str(out), [RUNNER])
        assert first["samples"] == 1 and first["rejects_by_code"] == {"not_audio": 1}  # a 200 HTML page
        again = run_corpus(spec, str(out), [RUNNER])
        assert again["rejects_by_code"] == {"not_audio": 1} and server.count("/html-once/clip0.wav") == 1
        retried = run_corpus(spec, str(out), [RUNNER], retry_failed=True)
        assert retried["samples"] == 2 and retried["rejects_by_code"] == {}
        assert server.count("/html-once/clip0.wav") == 2 and server.count("/audio/clip1.flac") == 1
        assert retried["stages"]["fetch"]["total"]["content_rejected"] == 1
        import pandas as pd

        status = pd.concat(pd.read_parquet(p) for p in (out / "fetch" / "status" / "web").glob("*.parquet"))
        assert sorted(status["refetched"].dropna()) == ["content_rejected"]

        # an object cut short on disk: `clapcorpus fetch` fetches it again and counts it
        digest = hashlib.sha256(clips["clip1.flac"]).hexdigest()
        obj = out / "fetch" / "cache" / "objects" / digest[:2] / digest
        obj.write_bytes(obj.read_bytes()[:100])
        report = fetch_corpus(spec, str(out), [RUNNER])
        assert report["total"]["cache_mismatch"] == 1 and report["total"]["ok"] == 1
        assert obj.read_bytes() == clips["clip1.flac"] and server.count("/audio/clip1.flac") == 2
