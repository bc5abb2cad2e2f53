"""YouTube segments through yt-dlp's Python API (the ``[youtube]`` extra): audio only, cut in-process.

A manifest names a segment as a URL, e.g. with AudioSet's ``file_pattern``
``https://www.youtube.com/watch?v={ytid}&start={start}&end={end}``: ``start`` and ``end`` (seconds)
are taken off the URL before yt-dlp sees it; without ``end`` the segment is 10 s (AudioCaps' clips).
yt-dlp downloads the best audio-only format into a temporary folder; the segment is decoded with the
pipeline's own decoder and stored as 48 kHz mono 16-bit FLAC (the shard's own format, so nothing is
lost), which needs no ffmpeg binary. Every yt-dlp failure is mapped to a reject code by its message
(:func:`map_error`); the status table keeps the message.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from clap_corpus.core.audio import SAMPLE_RATE, quantize_int16
from clap_corpus.core.rejects import Code, RejectError
from clap_corpus.core.urls import redact_text
from clap_corpus.transforms.fetch.config import YouTubeOptions
from clap_corpus.transforms.fetch.http import FetchError, FetchPolicy, Sink

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_S = 10.0

# (pattern, code, error class), first match wins: the sign-in reasons before the generic ones.
_ERRORS: tuple[tuple[re.Pattern[str], Code, str], ...] = tuple(
    (re.compile(p, re.I), code, cls)
    for p, code, cls in (
        (r"not a bot", Code.BOT_CHECK, "bot_check"),
        (
            r"confirm your age|age-restricted|inappropriate for some users",
            Code.AGE_RESTRICTED,
            "age_restricted",
        ),
        (r"not (made this video )?available in your country|geo.?restrict", Code.GEO_BLOCKED, "geo_blocked"),
        (r"private video", Code.VIDEO_UNAVAILABLE, "private"),
        (
            r"account .* terminated|removed by the uploader|violating|no longer available",
            Code.VIDEO_UNAVAILABLE,
            "removed",
        ),
        (
            r"video unavailable|this video is unavailable|members-only|premieres in",
            Code.VIDEO_UNAVAILABLE,
            "unavailable",
        ),
        (r"HTTP Error 404|HTTP Error 410", Code.URL_GONE, "http_404"),
        (r"HTTP Error 429", Code.RATE_LIMITED, "http_429"),
        (r"HTTP Error \d+", Code.HTTP_ERROR, "http_error"),
        (r"timed out|timeout", Code.NETWORK_ERROR, "timeout"),
        (r"connection reset|reset by peer|incomplete read|IncompleteRead", Code.NETWORK_ERROR, "reset"),
        (
            r"name resolution|unable to download webpage|urlopen error|connection refused",
            Code.NETWORK_ERROR,
            "network",
        ),
    )
)


def map_error(message: str) -> FetchError:
    """The :class:`FetchError` for a yt-dlp error message."""
    for pattern, code, cls in _ERRORS:
        if pattern.search(message):
            m = re.search(r"HTTP Error (\d+)", message)
            return FetchError(code, cls, message.strip()[:500], http_code=int(m.group(1)) if m else None)
    return FetchError(Code.FETCH_FAILED, "youtube_error", message.strip()[:500])


def segment(url: str) -> tuple[str, float | None, float | None]:
    """(the URL yt-dlp gets, start, end): ``start``/``end`` query parameters taken off."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    times = {k: v for k, v in query if k in ("start", "end")}
    rest = [(k, v) for k, v in query if k not in ("start", "end")]
    try:
        start = float(times["start"]) if "start" in times else None
        end = float(times["end"]) if "end" in times else None
    except ValueError:
        raise FetchError(Code.FETCH_FAILED, "bad_segment", f"start/end are not numbers in {url}") from None
    if start is not None and end is None:
        end = start + DEFAULT_SEGMENT_S
    return urlunsplit(parts._replace(query=urlencode(rest))), start, end


class _Quiet:
    """yt-dlp's logger: its chatter to DEBUG, the signed media URLs in it redacted; errors come back
    as exceptions."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", redact_text(msg))

    info = warning = debug

    def error(self, msg: str) -> None:
        log.debug("yt-dlp error: %s", redact_text(msg))


def ydl_params(options: YouTubeOptions, policy: FetchPolicy, folder: str) -> dict:
    """yt-dlp's options: audio only, into ``folder``, with the spec's pass-through settings."""
    params: dict = {
        "format": options.format,
        "outtmpl": os.path.join(folder, "audio.%(ext)s"),
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "noplaylist": True,
        "logger": _Quiet(),
        "retries": policy.options.retries,
        "socket_timeout": policy.options.read_timeout_s,
        "cachedir": False,
        "overwrites": True,
    }
    if policy.max_bytes is not None:
        params["max_filesize"] = policy.max_bytes
    if options.cookies_file:
        params["cookiefile"] = options.cookies_file
    if options.proxy:
        params["proxy"] = options.proxy
    if options.rate_limit:
        params["ratelimit"] = options.rate_limit
    if options.sleep_interval_s:
        params["sleep_interval"] = options.sleep_interval_s
        if options.max_sleep_interval_s:
            params["max_sleep_interval"] = options.max_sleep_interval_s
    return params


def fetch_youtube(url: str, options: YouTubeOptions, policy: FetchPolicy, sink: Sink) -> int:
    """Download ``url``'s audio (cut to its segment) into ``sink``; returns the attempts (1: yt-dlp
    retries inside). Raises :class:`FetchError`."""
    try:
        import yt_dlp
        from yt_dlp.utils import DownloadError
    except ImportError:
        raise FetchError(
            Code.FETCH_FAILED,
            "youtube_extra_missing",
            "yt-dlp is not installed: pip install 'clap-corpus[youtube]'",
        ) from None
    target, start, end = segment(url)
    with tempfile.TemporaryDirectory(prefix="clapcorpus-ytdlp-") as folder:
        try:
            # typeshed's params type is narrower than yt-dlp's own: cachedir=False (no cache, as yt-dlp
            # documents) and a float socket_timeout are outside it
            params = ydl_params(options, policy, folder)
            with yt_dlp.YoutubeDL(params) as ydl:  # pyright: ignore[reportArgumentType]
                ydl.download([target])
        except DownloadError as e:
            error = map_error(str(e))
            error.attempts = 1
            raise error from None
        names = [n for n in os.listdir(folder) if not n.endswith((".part", ".ytdl"))]
        if not names:  # yt-dlp skips a file over max_filesize without an error
            e = FetchError(
                Code.TOO_LARGE, "too_large", f"yt-dlp wrote no file (over {policy.max_bytes} bytes?)"
            )
            e.attempts = 1
            raise e
        with open(os.path.join(folder, names[0]), "rb") as f:
            data = f.read()
    if start is not None:
        data = cut_segment(data, start, end)
    sink.write(data)
    return 1


def cut_segment(data: bytes, start: float, end: float | None) -> bytes:
    """The audio between ``start`` and ``end`` seconds as 48 kHz mono 16-bit FLAC."""
    from clap_corpus.transforms.decode import decode_audio
    from clap_corpus.transforms.flac import encode_flac

    try:
        decoded = decode_audio(data, max_duration_s=end if end else 1e9, time_limit_s=None)
    except RejectError as e:
        raise FetchError(
            Code.FETCH_FAILED, "undecodable", f"the download cannot be decoded: {e.reason}"
        ) from None
    a = round(start * SAMPLE_RATE)
    b = len(decoded.samples) if end is None else round(end * SAMPLE_RATE)
    piece = decoded.samples[a:b]
    if piece.size == 0:
        raise FetchError(
            Code.FETCH_FAILED,
            "segment_outside",
            f"the segment {start:g}-{end:g} s is past the audio's end ({decoded.duration_s:.1f} s)",
        )
    return encode_flac(quantize_int16(piece), SAMPLE_RATE)
