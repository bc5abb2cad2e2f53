"""Fetching one status shard's rows: the cache first, then the previous status, then the network.

No Beam here; pipeline/fetch_stage.py hands each shard's rows to :class:`ShardFetcher` and turns the
outcomes into records (their audio now a :class:`~core.audio_ref.FetchedFile`) and fetch rejects.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from clap_corpus.core.rejects import Code
from clap_corpus.transforms.fetch import status as st
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.http import FetchError, FetchPolicy, fetch, make_pool
from clap_corpus.transforms.fetch.limits import shared_limiter


@dataclass(frozen=True)
class FetchItem:
    source: str
    row: int | None
    key: str
    url: str


@dataclass(frozen=True)
class FetchOutcome:
    item: FetchItem
    status: st.StatusRow
    object: str | None  # the cache object holding the bytes (status ok or cached)


class ShardFetcher:
    """Fetches the rows of one status shard, ``connections`` at a time.

    ``policies`` gives each source's :class:`FetchPolicy`. Rows whose URL is in the cache are not
    fetched; rows the previous table says ``failed`` stay failed unless ``retry_failed``."""

    def __init__(
        self,
        options: FetchOptions,
        cache: ContentCache,
        policies: Mapping[str, FetchPolicy],
        *,
        retry_failed: bool = False,
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.options, self.cache, self.policies = options, cache, policies
        self.retry_failed = retry_failed
        self.environ = os.environ if environ is None else environ
        self.sleep = sleep
        self.pool = make_pool(options)
        self.limiter = shared_limiter(options.max_per_host, options.requests_per_second_per_host)
        self._freesound = None
        self._freesound_lock = threading.Lock()

    def run(self, items: Iterable[FetchItem], previous: Mapping[str, st.StatusRow]) -> list[FetchOutcome]:
        items = list(items)
        by_url: dict[str, FetchItem] = {}
        for item in items:
            by_url.setdefault(item.url, item)  # a URL twice in a shard is fetched once
        with ThreadPoolExecutor(max_workers=self.options.connections) as pool:
            done = dict(
                zip(
                    by_url,
                    pool.map(lambda i: self._settled(i, previous.get(i.url)), by_url.values()),
                    strict=True,
                )
            )
            todo = [item for url, item in by_url.items() if done[url] is None]
            capped = self._over_the_cap(todo)
            fetched = pool.map(lambda i: self._download(i, i.url in capped), todo)
            done.update(zip((i.url for i in todo), fetched, strict=True))
        if self._freesound is not None:
            self._freesound.save()
            self._freesound = None  # the next shard reads the day's count again (other workers', a new day)
        out = []
        for item in items:
            row, obj = done[item.url]
            out.append(FetchOutcome(item, replace(row, source=item.source, row=item.row, key=item.key), obj))
        return out

    def _base(self, item: FetchItem) -> st.StatusRow:
        return st.StatusRow(item.source, item.row, item.key, item.url, st.CACHED)

    def _settled(
        self, item: FetchItem, before: st.StatusRow | None
    ) -> tuple[st.StatusRow, str | None] | None:
        """The outcome without a request (in the cache, or failed before), else None."""
        entry = self.cache.lookup(item.url)
        if entry is not None:
            return replace(self._base(item), bytes=entry.bytes, digest=entry.digest), entry.object
        if before is not None and before.status == st.FAILED and not self.retry_failed:
            return replace(before, attempts=0, seconds=0.0), None
        return None

    def _over_the_cap(self, todo: list[FetchItem]) -> set[str]:
        """The Freesound URLs past what is left of the day's cap, in row order, so that which rows wait
        for tomorrow does not depend on thread timing."""
        api = [i.url for i in todo if self._host(i.url) == self.options.freesound.api_host.lower()]
        if not api or not self.options.freesound.daily_limit:
            return set()
        return set(api[self.freesound().remaining() :])

    @staticmethod
    def _host(url: str) -> str:
        return (urlsplit(url).hostname or "").lower()

    def _download(self, item: FetchItem, capped: bool) -> tuple[st.StatusRow, str | None]:
        base = self._base(item)
        if capped:
            return self._failed(base, self.freesound().cap_error(), time.monotonic()), None
        t0 = time.monotonic()
        sink = self.cache.pending()
        try:
            attempts, http_code = self._fetch(item, sink)
            entry = sink.commit(item.url)
        except FetchError as e:
            sink.discard()
            return self._failed(base, e, t0), None
        except Exception as e:
            # What a server sends must never stop the task (a Location that is no URL, a preview
            # field of the wrong type ...): the row fails with the error named.
            sink.discard()
            failure = FetchError(Code.FETCH_FAILED, "unexpected", f"{type(e).__name__}: {str(e)[:300]}")
            failure.attempts = 1
            return self._failed(base, failure, t0), None
        except BaseException:
            sink.discard()
            raise
        row = replace(
            base,
            status=st.OK,
            http_code=http_code,
            bytes=entry.bytes,
            digest=entry.digest,
            attempts=attempts,
            seconds=round(time.monotonic() - t0, 3),
        )
        return row, entry.object

    @staticmethod
    def _failed(base: st.StatusRow, e: FetchError, t0: float) -> st.StatusRow:
        return replace(
            base,
            status=st.DEFERRED if e.code == Code.DOWNLOAD_CAP else st.FAILED,
            code=str(e.code),
            http_code=e.http_code,
            error_class=e.error_class,
            error=e.message[:500],
            attempts=e.attempts,
            seconds=round(time.monotonic() - t0, 3),
        )

    def _fetch(self, item: FetchItem, sink) -> tuple[int, int | None]:
        policy = self.policies[item.source]
        host = self._host(item.url)
        if host in self.options.youtube.hosts:
            from clap_corpus.transforms.fetch.youtube import fetch_youtube

            with self.limiter.slot(host):  # the per-host limits hold for yt-dlp's page requests too
                return fetch_youtube(item.url, self.options.youtube, policy, sink), None
        if host == self.options.freesound.api_host.lower():
            return self.freesound().fetch(item.url, policy, sink)
        got = fetch(item.url, policy, sink, self.pool, limiter=self.limiter, sleep=self.sleep)
        return got.attempts, got.http_code

    def freesound(self):
        with self._freesound_lock:
            if self._freesound is None:
                from clap_corpus.transforms.fetch.freesound import FreesoundClient

                self._freesound = FreesoundClient(
                    self.options, self.cache, self.pool, self.limiter, self.environ, sleep=self.sleep
                )
            return self._freesound
