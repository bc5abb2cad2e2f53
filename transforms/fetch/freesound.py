"""Freesound previews through the API: LAION-Audio-630K's largest source.

A row's URL is the sound's API resource, e.g. the freesound adapter's ``file_pattern``
``https://freesound.org/apiv2/sounds/{id}/``. The client asks it for ``previews`` with the token
from the environment variable ``token_env`` (``Authorization: Token ...``), then downloads the
preview named by ``preview`` without the token (previews are public, on another host:
``cdn.freesound.org`` must be in the source's ``allowed_hosts`` when it has any). The API request is
routed, checked and sent by the one reading of its URL (:mod:`core.urls`), and the token goes to that
URL's origin only, never along a redirect to another.

The daily cap: API requests are counted per UTC day in ``<cache>/freesound/requests-<day>.json``.
Once ``daily_limit`` is reached, or the API answers 429 with a wait longer than
``max_retry_after_s``, the remaining rows are not requested: they get status ``deferred`` (reject
``download_cap``) and the next day's run fetches them (what is cached is never fetched again).
The count is saved when a status shard ends; shards fetched in parallel each read it at start, so
with several workers the cap can be passed by what they fetch meanwhile: the API's own 429 is what
stops them then.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import threading
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import urllib3

from clap_corpus.core.rejects import Code
from clap_corpus.transforms import storage
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.http import FetchError, FetchPolicy, Sink, fetch
from clap_corpus.transforms.fetch.limits import HostLimiter

MAX_API_BYTES = 1 << 20


class _Memory:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def reset(self) -> None:
        self.data = bytearray()


def today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


class FreesoundClient:
    def __init__(
        self,
        options: FetchOptions,
        cache: ContentCache,
        pool: urllib3.PoolManager,
        limiter: HostLimiter,
        environ: Mapping[str, str],
        *,
        sleep: Callable[[float], None] = time.sleep,
        day: str | None = None,
    ):
        self.options, self.fs = options, options.freesound
        self.pool, self.limiter, self.sleep = pool, limiter, sleep
        self.token = environ.get(self.fs.token_env, "")
        self.counter_path = storage.join(cache.root, "freesound", f"requests-{day or today()}.json")
        self._lock = threading.Lock()
        self.requests = self._saved_count()
        self.capped = bool(self.fs.daily_limit) and self.requests >= self.fs.daily_limit

    def _saved_count(self) -> int:
        try:
            return int(json.loads(storage.read_bytes(self.counter_path))["requests"])
        except (OSError, ValueError, KeyError):
            return 0

    def save(self) -> None:
        with self._lock:
            # another shard may have counted meanwhile: keep the larger count
            count = max(self.requests, self._saved_count())
            storage.write_bytes_atomic(self.counter_path, json.dumps({"requests": count}).encode())

    def remaining(self) -> int:
        """API requests left today (a large number when there is no cap)."""
        with self._lock:
            if self.capped:
                return 0
            return max(0, self.fs.daily_limit - self.requests) if self.fs.daily_limit else 1 << 62

    def cap_error(self) -> FetchError:
        return FetchError(
            Code.DOWNLOAD_CAP,
            "daily_limit",
            f"Freesound's daily cap ({self.fs.daily_limit} API requests) is reached; rerun tomorrow",
        )

    def _take(self) -> None:
        with self._lock:
            if self.capped or (self.fs.daily_limit and self.requests >= self.fs.daily_limit):
                self.capped = True
                raise self.cap_error()
            self.requests += 1

    def fetch(self, url: str, policy: FetchPolicy, sink: Sink) -> tuple[int, int | None]:
        """The preview of the sound at API ``url`` into ``sink``: (attempts, HTTP code)."""
        if not self.token:
            raise FetchError(
                Code.FETCH_FAILED,
                "no_token",
                f"no Freesound API token: set the environment variable {self.fs.token_env}",
            )
        self._take()
        api_url = url if urlsplit(url).query else f"{url}?fields=id,previews"
        api_policy = dataclasses.replace(policy, max_bytes=MAX_API_BYTES)
        doc = _Memory()
        try:
            got = fetch(
                api_url,
                api_policy,
                doc,
                self.pool,
                limiter=self.limiter,
                headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
                sleep=self.sleep,
            )
        except FetchError as e:
            if e.code == Code.RATE_LIMITED:  # the API's own cap: stop asking today
                with self._lock:
                    self.capped = True
                deferred = FetchError(
                    Code.DOWNLOAD_CAP, "api_429", f"Freesound API: {e.message}", http_code=429
                )
                deferred.attempts = e.attempts
                raise deferred from None
            raise
        try:
            preview = json.loads(bytes(doc.data))["previews"][self.fs.preview]
        except (ValueError, KeyError, TypeError):
            raise FetchError(
                Code.FETCH_FAILED,
                "no_preview",
                f"the API's answer has no previews.{self.fs.preview}",
                http_code=got.http_code,
            ) from None
        audio = fetch(preview, policy, sink, self.pool, limiter=self.limiter, sleep=self.sleep)
        return got.attempts + audio.attempts, audio.http_code
