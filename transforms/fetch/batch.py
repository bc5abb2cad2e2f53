"""Fetching one status shard's rows: the cache first, then the previous status, then the network.

No Beam here; pipeline/stages/fetch.py hands each shard's rows to :class:`ShardFetcher` and turns the
outcomes into records (their audio now a :class:`~core.audio_ref.FetchedFile`) and fetch rejects.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from clap_corpus.core.rejects import Code
from clap_corpus.core.urls import BadURL, normalize_host, parse_web_url, url_identity
from clap_corpus.transforms.fetch import net
from clap_corpus.transforms.fetch import status as st
from clap_corpus.transforms.fetch.cache import ContentCache
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.http import FetchError, FetchPolicy, fetch, make_pool
from clap_corpus.transforms.fetch.limits import shared_limiter

log = logging.getLogger(__name__)


def _host_of(name: str) -> str:
    try:
        return normalize_host(name)
    except BadURL:
        return name.lower()


@dataclass(frozen=True)
class FetchItem:
    source: str
    row: int | None
    key: str
    url: str  # what is requested: it may hold credentials, and is never written (see identity)


@dataclass(frozen=True)
class FetchOutcome:
    item: FetchItem
    status: st.StatusRow  # its url: the item's URL identity
    object: str | None  # the cache object holding the bytes (status ok or cached)


CACHE_MISMATCH, CONTENT_REJECTED = "cache_mismatch", "content_rejected"


class ShardFetcher:
    """Fetches the rows of one status shard, ``connections`` at a time.

    ``policies`` gives each source's :class:`FetchPolicy`. Rows whose URL is in the cache (and whose
    object checks out) are not fetched; rows the previous table says ``failed`` stay failed unless
    ``retry_failed``, which also fetches again the rows of ``content_rejected`` ((source, key) pairs
    whose cached bytes the decoder rejected as ``not_audio`` or ``empty_file``). Rows are told apart by
    URL identity (redacted, no fragment): a URL twice in a shard is fetched once. ``resolve`` is the
    name resolver (getaddrinfo)."""

    def __init__(
        self,
        options: FetchOptions,
        cache: ContentCache,
        policies: Mapping[str, FetchPolicy],
        *,
        retry_failed: bool = False,
        content_rejected: frozenset[tuple[str, str]] = frozenset(),
        environ: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        resolve: net.Resolver | None = None,
    ):
        self.options, self.cache, self.policies = options, cache, policies
        self.retry_failed = retry_failed
        self.content_rejected = content_rejected if retry_failed else frozenset()
        self.environ = os.environ if environ is None else environ
        self.sleep = sleep
        self.resolve = resolve or socket.getaddrinfo
        self.pool = make_pool(options, self.resolve)
        self.limiter = shared_limiter(options.max_per_host, options.requests_per_second_per_host)
        self._freesound = None
        self._freesound_lock = threading.Lock()

    def identity(self, item: FetchItem) -> str:
        return url_identity(item.url, self.policies[item.source].secret_params)

    def run(self, items: Iterable[FetchItem], previous: Mapping[str, st.StatusRow]) -> list[FetchOutcome]:
        items = list(items)
        ids = [self.identity(i) for i in items]
        by_id: dict[str, FetchItem] = {}
        rejected: set[str] = set()
        for item, ident in zip(items, ids, strict=True):
            by_id.setdefault(ident, item)  # a URL twice in a shard is fetched once
            if (item.source, item.key) in self.content_rejected:
                rejected.add(ident)
        with ThreadPoolExecutor(max_workers=self.options.connections) as pool:
            settled = dict(
                zip(
                    by_id,
                    pool.map(lambda k: self._settled(by_id[k], k, previous.get(k), k in rejected), by_id),
                    strict=True,
                )
            )
            done = {k: v for k, v in settled.items() if not isinstance(v, str | None)}
            todo = [(k, by_id[k], settled[k]) for k in by_id if k not in done]
            capped = self._over_the_cap([i for _, i, _ in todo])
            fetched = pool.map(lambda t: self._download(t[1], t[0], t[1].url in capped, t[2]), todo)
            done.update(zip((k for k, _, _ in todo), fetched, strict=True))
        if self._freesound is not None:
            self._freesound.save()
            self._freesound = None  # the next shard reads the day's count again (other workers', a new day)
        out = []
        for item, ident in zip(items, ids, strict=True):
            row, obj = done[ident]
            out.append(FetchOutcome(item, replace(row, source=item.source, row=item.row, key=item.key), obj))
        return out

    def _base(self, item: FetchItem, ident: str) -> st.StatusRow:
        return st.StatusRow(item.source, item.row, item.key, ident, st.CACHED)

    def _settled(
        self, item: FetchItem, ident: str, before: st.StatusRow | None, rejected: bool
    ) -> tuple[st.StatusRow, str | None] | str | None:
        """The outcome without a request (in the cache, or failed before); else None, or why a cached
        copy is not used (the row is fetched again)."""
        entry = self.cache.lookup(ident)
        if entry is not None:
            if rejected:
                return CONTENT_REJECTED
            if not self.cache.verify(entry):
                log.warning(
                    "cache object %s is not the bytes it names: fetching %s again", entry.object, ident
                )
                return CACHE_MISMATCH
            return replace(self._base(item, ident), bytes=entry.bytes, digest=entry.digest), entry.object
        if before is not None and before.status == st.FAILED and not self.retry_failed:
            return replace(before, url=ident, attempts=0, seconds=0.0), None
        return None

    def _over_the_cap(self, todo: list[FetchItem]) -> set[str]:
        """The Freesound URLs past what is left of the day's cap, in row order, so that which rows wait
        for tomorrow does not depend on thread timing."""
        api = [i.url for i in todo if self._host(i.url) == self._api_host()]
        if not api or not self.options.freesound.daily_limit:
            return set()
        return set(api[self.freesound().remaining() :])

    def _api_host(self) -> str:
        return _host_of(self.options.freesound.api_host)

    @staticmethod
    def _host(url: str) -> str | None:
        """The host a URL is requested from (None: a URL that is not read one way only)."""
        try:
            return parse_web_url(url).host
        except BadURL:
            return None

    def _download(
        self, item: FetchItem, ident: str, capped: bool, refetched: str | None
    ) -> tuple[st.StatusRow, str | None]:
        base = replace(self._base(item, ident), refetched=refetched)
        policy = self.policies[item.source]
        if capped:
            return self._failed(base, self.freesound().cap_error(), time.monotonic(), policy), None
        t0 = time.monotonic()
        sink = self.cache.pending()
        try:
            attempts, http_code = self._fetch(item, sink)
            entry = sink.commit(ident)
        except FetchError as e:
            sink.discard()
            return self._failed(base, e, t0, policy), None
        except Exception as e:
            # What a server sends must never stop the task (a Location that is no URL, a preview
            # field of the wrong type ...): the row fails with the error named.
            sink.discard()
            failure = FetchError(Code.FETCH_FAILED, "unexpected", f"{type(e).__name__}: {str(e)[:300]}")
            failure.attempts = 1
            return self._failed(base, failure, t0, policy), None
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
    def _failed(base: st.StatusRow, e: FetchError, t0: float, policy: FetchPolicy) -> st.StatusRow:
        return replace(
            base,
            status=st.DEFERRED if e.code == Code.DOWNLOAD_CAP else st.FAILED,
            code=str(e.code),
            http_code=e.http_code,
            error_class=e.error_class,
            error=policy.redact(e.message)[:500],
            attempts=e.attempts,
            seconds=round(time.monotonic() - t0, 3),
        )

    def _fetch(self, item: FetchItem, sink) -> tuple[int, int | None]:
        policy = self.policies[item.source]
        host = self._host(item.url)
        if host is not None and host in {_host_of(h) for h in self.options.youtube.hosts}:
            from clap_corpus.transforms.fetch.youtube import fetch_youtube

            target = policy.check(item.url)
            if not self.options.allow_private_networks:
                # yt-dlp makes its own connections: the page's host is checked here, once
                try:
                    net.check_host(target.bare_host, target.effective_port, self.resolve)
                except net.AddressRefused as e:
                    raise FetchError(Code.PRIVATE_ADDRESS, "private_address", str(e)) from None
            with self.limiter.slot(host):  # the per-host limits hold for yt-dlp's page requests too
                return fetch_youtube(item.url, self.options.youtube, policy, sink), None
        if host is not None and host == self._api_host():
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
