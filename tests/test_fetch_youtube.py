"""YouTube segments through yt-dlp: the error mapping (recorded yt-dlp messages), yt-dlp's generic
extractor against the loopback server on a direct media URL, and AudioSet rows fetched by URL."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
import yaml
from fetch_server import FetchServer

from clap_corpus.core.rejects import Code
from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.transforms.decode import decode_audio
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions, YouTubeOptions
from clap_corpus.transforms.fetch.http import FetchError, FetchPolicy
from clap_corpus.transforms.fetch.youtube import fetch_youtube, map_error, segment, ydl_params

# What yt-dlp printed for each failure (its DownloadError messages, ids changed).
RECORDED = [
    ("ERROR: [youtube] abcdefghijk: Video unavailable", Code.VIDEO_UNAVAILABLE, "unavailable"),
    (
        "ERROR: [youtube] abcdefghijk: Video unavailable. This video has been removed by the uploader",
        Code.VIDEO_UNAVAILABLE,
        "removed",
    ),
    (
        "ERROR: [youtube] abcdefghijk: Video unavailable. This video is no longer available because the "
        "YouTube account associated with this video has been terminated.",
        Code.VIDEO_UNAVAILABLE,
        "removed",
    ),
    (
        "ERROR: [youtube] abcdefghijk: Private video. Sign in if you've been granted access to this video",
        Code.VIDEO_UNAVAILABLE,
        "private",
    ),
    (
        "ERROR: [youtube] abcdefghijk: Sign in to confirm your age. This video may be inappropriate for "
        "some users. Use --cookies-from-browser or --cookies for the authentication.",
        Code.AGE_RESTRICTED,
        "age_restricted",
    ),
    (
        "ERROR: [youtube] abcdefghijk: Sign in to confirm you\u2019re not a bot. "
        "Use --cookies-from-browser or --cookies for the authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ",
        Code.BOT_CHECK,
        "bot_check",
    ),
    (
        "ERROR: [youtube] abcdefghijk: The uploader has not made this video available in your country",
        Code.GEO_BLOCKED,
        "geo_blocked",
    ),
    (
        "ERROR: [youtube] abcdefghijk: Video unavailable. This video is not available in your country",
        Code.GEO_BLOCKED,
        "geo_blocked",
    ),
    (
        "ERROR: [youtube] abcdefghijk: Unable to download webpage: <urlopen error [Errno -3] Temporary "
        'failure in name resolution> (caused by TransportError("<urlopen error [Errno -3] Temporary '
        'failure in name resolution>"))',
        Code.NETWORK_ERROR,
        "network",
    ),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", Code.HTTP_ERROR, "http_error"),
    ("ERROR: [generic] Unable to download webpage: HTTP Error 404: Not Found", Code.URL_GONE, "http_404"),
    (
        "ERROR: unable to download video data: HTTP Error 429: Too Many Requests",
        Code.RATE_LIMITED,
        "http_429",
    ),
    ("ERROR: [download] Got error: The read operation timed out", Code.NETWORK_ERROR, "timeout"),
    ("ERROR: [youtube] abcdefghijk: Requested format is not available", Code.FETCH_FAILED, "youtube_error"),
]


@pytest.mark.parametrize("message, code, error_class", RECORDED)
def test_every_yt_dlp_failure_maps_to_a_status(message, code, error_class):
    e = map_error(message)
    assert (e.code, e.error_class) == (code, error_class)
    assert e.message == message.strip()


def test_the_segment_comes_off_the_url():
    assert segment("https://www.youtube.com/watch?v=abcdefghijk&start=30.000&end=40.000") == (
        "https://www.youtube.com/watch?v=abcdefghijk",
        30.0,
        40.0,
    )
    assert segment("https://youtu.be/abcdefghijk?start=5")[1:] == (5.0, 15.0)  # AudioCaps: 10 s
    assert segment("https://youtu.be/abcdefghijk")[1:] == (None, None)


def test_options_pass_through_to_yt_dlp(tmp_path):
    yt_dlp = pytest.importorskip("yt_dlp")
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tTRUE\t0\tCONSENT\tYES+1\n")
    options = YouTubeOptions(
        cookies_file=str(cookies),
        proxy="socks5://127.0.0.1:1080",
        rate_limit=500_000,
        sleep_interval_s=1.0,
        max_sleep_interval_s=3.0,
    )
    params = ydl_params(options, FetchPolicy(FetchOptions(), max_bytes=1000), str(tmp_path))
    assert {
        k: params[k] for k in ("cookiefile", "proxy", "ratelimit", "sleep_interval", "max_sleep_interval")
    } == {
        "cookiefile": str(cookies),
        "proxy": "socks5://127.0.0.1:1080",
        "ratelimit": 500_000,
        "sleep_interval": 1.0,
        "max_sleep_interval": 3.0,
    }
    assert params["format"] == "bestaudio/best" and params["max_filesize"] == 1000
    with yt_dlp.YoutubeDL(params) as ydl:  # yt-dlp itself accepts them and loads the cookies
        assert any(c.name == "CONSENT" for c in ydl.cookiejar)


@pytest.fixture(scope="module")
def wav3s() -> bytes:
    t = np.arange(3 * 16000) / 16000
    return synth.encode_audio((0.4 * np.sin(2 * np.pi * 330 * t) * (t / 3)).astype(np.float32), 16000, "wav")


def test_yt_dlp_generic_extractor_on_a_direct_media_url_cut_to_the_segment(tmp_path, wav3s):
    pytest.importorskip("yt_dlp")
    options = FetchOptions()
    with FetchServer({"x.wav": wav3s}) as server:
        sink = ContentCache(str(tmp_path)).pending()
        assert fetch_youtube(
            server.url("/audio/x.wav?start=0.5&end=2.0"), options.youtube, FetchPolicy(options), sink
        )
        entry = sink.commit("u")
        with pytest.raises(FetchError) as gone:
            fetch_youtube(
                server.url("/status/404"),
                options.youtube,
                FetchPolicy(options),
                ContentCache(str(tmp_path)).pending(),
            )
    assert (gone.value.code, gone.value.http_code) == (Code.URL_GONE, 404)
    with open(entry.object, "rb") as f:
        cut, rate = sf.read(io.BytesIO(f.read()), dtype="int16")
    assert rate == 48000 and cut.ndim == 1 and len(cut) == 72000  # 1.5 s of 48 kHz mono
    whole = decode_audio(wav3s).samples
    assert np.abs(cut / 32767 - whole[24000:96000]).max() < 1e-4  # exactly that stretch of the source


def test_audioset_rows_fetched_through_yt_dlp_in_a_run(tmp_path, wav3s):
    pytest.importorskip("yt_dlp")
    ids = ("aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc")
    with FetchServer({f"{ids[0]}.wav": wav3s, f"{ids[1]}.wav": wav3s}) as server:
        (tmp_path / "classes.csv").write_text('index,mid,display_name\n0,/m/a,"Dog"\n')
        rows = "".join(f'{y}, 0.500, 2.000, "/m/a"\n' for y in ids)
        (tmp_path / "seg.csv").write_text(
            "# c\n# n\n# YTID, start_seconds, end_seconds, positive_labels\n" + rows
        )
        doc = {
            "corpus": "yt",
            "options": {
                "shard_size": 8,
                "split_proportions": {"train": 1.0},
                "fetch": {"youtube": {"hosts": ["127.0.0.1"]}, "retries": 0, "allow_private_networks": True},
            },
            "sources": [
                {
                    "name": "as",
                    "adapter": "audioset",
                    "manifest": "seg.csv",
                    "audio_root": "audio",
                    "allowed_schemes": ["http"],
                    "options": {
                        "class_index": "classes.csv",
                        "file_pattern": server.url("/audio/{ytid}.wav?start={start}&end={end}"),
                    },
                }
            ],
        }
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
        s = run_corpus(str(tmp_path / "spec.yaml"), str(tmp_path / "out"), ["--runner=FnApiRunner"])
    assert s["accounting_ok"] and s["samples"] == 2 and s["rejects_by_code"] == {"url_gone": 1}
    meta = [
        json.loads(x)
        for x in (tmp_path / "out" / "rejects" / "manifest" / "as.jsonl").read_text().splitlines()
    ]
    assert [m["code"] for m in meta] == ["url_gone"] and ids[2] in meta[0]["path"]
    assert s["sources"]["as"]["hours"] == pytest.approx(2 * 1.5 / 3600, abs=1e-4)  # the segments, not 3 s
