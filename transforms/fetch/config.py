"""The spec's ``options.fetch``: how audio URLs are downloaded (none of it changes a shard's bytes)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictStr, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from clap_corpus.core.config import (
    MODEL_CONFIG,
    Bytes,
    Count,
    Natural,
    NonNegative,
    PositiveSeconds,
    Seconds,
    ordered,
)

YOUTUBE_HOSTS = ("www.youtube.com", "youtube.com", "m.youtube.com", "youtu.be", "music.youtube.com")


@pydantic_dataclass(frozen=True, config=MODEL_CONFIG)
class YouTubeOptions:
    """Passed to yt-dlp (the ``[youtube]`` extra) for URLs on ``hosts``."""

    hosts: tuple[StrictStr, ...] = YOUTUBE_HOSTS  # URLs on these hosts go through yt-dlp
    cookies_file: StrictStr | None = None  # Netscape cookies.txt: age-restricted videos, bot checks
    proxy: StrictStr | None = None  # e.g. socks5://127.0.0.1:1080 (geo-blocked videos)
    rate_limit: Bytes | None = None  # bytes per second per download (yt-dlp's ratelimit)
    sleep_interval_s: Seconds = 0.0  # yt-dlp's sleep before each download
    max_sleep_interval_s: Seconds | None = None  # with sleep_interval_s: a random sleep in between
    format: StrictStr = "bestaudio/best"

    @model_validator(mode="after")
    def _bounds(self) -> YouTubeOptions:
        ordered("sleep_interval_s", self.sleep_interval_s, "max_sleep_interval_s", self.max_sleep_interval_s)
        return self


@pydantic_dataclass(frozen=True, config=MODEL_CONFIG)
class FreesoundOptions:
    """Freesound previews through the API (``https://<api_host>/apiv2/sounds/<id>/``)."""

    api_host: StrictStr = "freesound.org"  # URLs on this host are API calls, answered with a preview URL
    token_env: StrictStr = "FREESOUND_TOKEN"  # the environment variable holding the API token
    preview: StrictStr = "preview-hq-ogg"  # which of the API's `previews` to download
    daily_limit: Natural = 2000  # API requests per UTC day (Freesound's standard cap); 0: no cap


@pydantic_dataclass(frozen=True, config=MODEL_CONFIG)
class FetchOptions:
    """``options.fetch`` of the spec; the defaults are what a run without the block uses."""

    cache: StrictStr | None = None  # folder or bucket URL; None: <output>/fetch/cache
    status_shard_size: Count = 1000  # manifest rows per status table (and per fetching task)
    connections: Annotated[Count, Field(le=1024)] = 16  # concurrent downloads per fetching task (threads)
    max_per_host: Annotated[Count, Field(le=1024)] = 8  # concurrent requests to one host, per worker process
    requests_per_second_per_host: NonNegative = 0.0  # per worker process; 0: no limit
    connect_timeout_s: PositiveSeconds = 10.0
    read_timeout_s: PositiveSeconds = 30.0  # the longest wait for the next bytes
    total_timeout_s: PositiveSeconds = 600.0  # one attempt, body included (a slow drip ends here)
    retries: Natural = 3  # attempts after the first, for timeouts, resets, 429 and 5xx
    backoff_s: Seconds = 1.0  # first retry's wait; doubles each time, with jitter seeded by the URL
    max_backoff_s: Seconds = 60.0
    max_retry_after_s: Seconds = 300.0  # a longer Retry-After fails the attempt instead of waiting
    max_redirects: Natural = 5
    user_agent: StrictStr = "clap-corpus (audio dataset builder)"
    # Fetch from loopback, private and link-local addresses too (the cloud metadata service is one);
    # checked on the address connected to, every redirect hop included. Off: a manifest or a redirect
    # cannot reach what only the worker's network can.
    allow_private_networks: StrictBool = False
    youtube: YouTubeOptions = Field(default_factory=YouTubeOptions)
    freesound: FreesoundOptions = Field(default_factory=FreesoundOptions)

    @model_validator(mode="after")
    def _bounds(self) -> FetchOptions:
        ordered("backoff_s", self.backoff_s, "max_backoff_s", self.max_backoff_s)
        return self
