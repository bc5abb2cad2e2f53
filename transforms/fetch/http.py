"""One URL's bytes over HTTP(S), the way a crawler at scale must fetch them, from servers that may be
hostile.

- one reading of every URL (:mod:`core.urls`): the URL that is checked against the allowed schemes and
  hosts is the URL requested, and a URL that two parsers would read differently is refused
  (``bad_url``); every redirect hop is checked the same way, and a loop ends at ``max_redirects``;
- only public addresses, checked on the address connected to (:mod:`.net`), unless
  ``allow_private_networks``;
- timeouts: connecting, each wait for more bytes, and a wall-clock deadline over the whole attempt
  (connection, headers, body, every hop), enforced by a watchdog that shuts the socket down, so a
  server that drips one byte a second is cut off on time;
- retries for what may pass (timeouts, resets, 429, 5xx), waiting ``backoff_s * 2**n`` scaled by a
  jitter drawn from the URL (reproducible, and still spread across URLs), or what ``Retry-After`` says;
- the byte cap counted on the bytes received (after ``Content-Encoding: gzip``/``deflate`` is
  undone), whatever ``Content-Length`` claims; another encoding fails the row, named;
- per-host limits held by the host of each hop, not the first one;
- no cookie jar, and ``Authorization``/``Cookie`` headers sent only to the URL's own origin (scheme,
  host and port): a redirect to another port, another host, or from https to http goes without them.

urllib3 is used directly (no ``requests`` session): it never turns a URL's ``user:pass@`` into a
header (and the userinfo is dropped before the request anyway), keeps no cookies, and its own retry
and redirect logic is switched off.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import re
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import urllib3

from clap_corpus.core.hashing import unit_interval
from clap_corpus.core.rejects import Code
from clap_corpus.core.urls import (
    SECRET_QUERY_PARAMS,
    BadURL,
    WebURL,
    join_location,
    normalize_host,
    parse_web_url,
    redact_text,
    redact_url,
)
from clap_corpus.transforms.fetch import net
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.limits import HostLimiter

CHUNK = 1 << 16
REDIRECTS = frozenset({301, 302, 303, 307, 308})
GONE = frozenset({404, 410})
# Headers that carry who the client is; sent to the URL's own origin only.
SENSITIVE = frozenset({"authorization", "cookie", "proxy-authorization"})
_SCHEME = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*):")


class _QueryWithheld(logging.Filter):
    """urllib3's own log lines name each request target, query included (a signature, a token): the
    query is withheld from them. Nothing else it logs names a URL's query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_withhold(a) for a in record.args)
        return True


def _withhold(value: object) -> object:
    if isinstance(value, str) and "?" in value:
        return value.split("?", 1)[0] + "?<query withheld>"
    return value


for _name in ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.connection", "urllib3.response"):
    logging.getLogger(_name).addFilter(_QueryWithheld())


class Sink(Protocol):
    """Where the body goes while it streams (the cache's pending object)."""

    def write(self, data: bytes) -> None: ...

    def reset(self) -> None: ...


class FetchError(Exception):
    """A download that did not succeed: the reject code, the status table's error class and HTTP code,
    and whether another attempt may succeed."""

    def __init__(
        self,
        code: Code,
        error_class: str,
        message: str,
        *,
        http_code: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.code, self.error_class, self.message = code, error_class, message
        self.http_code, self.retryable, self.retry_after = http_code, retryable, retry_after
        self.attempts = 0

    def __reduce__(self):  # Beam may pickle it
        return (_rebuild, (self.code, self.error_class, self.message, self.http_code, self.attempts))


def _rebuild(code: Code, error_class: str, message: str, http_code: int | None, attempts: int) -> FetchError:
    e = FetchError(code, error_class, message, http_code=http_code)
    e.attempts = attempts
    return e


@dataclass(frozen=True)
class FetchPolicy:
    """What one source allows, with the spec's fetch options."""

    options: FetchOptions
    allowed_schemes: frozenset[str] = frozenset({"http", "https"})
    allowed_hosts: tuple[str, ...] = ()  # empty: any host
    max_bytes: int | None = None
    secret_params: tuple[str, ...] = SECRET_QUERY_PARAMS  # query parameters never written

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_hosts", tuple(_normal_host(h) for h in self.allowed_hosts))

    def redact(self, text: str) -> str:
        """``text`` (a URL or a message naming URLs) as it may be written."""
        return redact_text(text, self.secret_params)

    def check(self, url: str, *, redirect: bool = False) -> WebURL:
        """``url`` read the one way it is requested, if the source allows it; else :class:`FetchError`
        (``bad_url`` or, for a redirect, ``redirect_refused``)."""
        m = _SCHEME.match(url)
        scheme = m.group(1).lower() if m else ""
        if scheme not in self.allowed_schemes or scheme not in ("http", "https"):
            return self._refuse(f"scheme '{scheme}' is not allowed", url, redirect)
        try:
            target = parse_web_url(url)
        except BadURL as e:
            code = Code.REDIRECT_REFUSED if redirect else Code.BAD_URL
            where = "redirect to a bad URL" if redirect else "bad URL"
            raise FetchError(code, "bad_url", f"{where}, {e}: {self._shown(url)}") from None
        if self.allowed_hosts and target.host.strip("[]") not in self.allowed_hosts:
            return self._refuse(f"host '{target.host}' is not allowed", url, redirect)
        return target

    def refuse(self, url: str) -> str:
        """Why ``url`` may not be requested ("" when it may)."""
        try:
            self.check(url)
        except FetchError as e:
            return e.message
        return ""

    def _refuse(self, why: str, url: str, redirect: bool) -> WebURL:
        if redirect:
            raise FetchError(
                Code.REDIRECT_REFUSED, "redirect_refused", f"redirect refused, {why}: {self._shown(url)}"
            )
        raise FetchError(Code.REDIRECT_REFUSED, "url_refused", f"{why}: {self._shown(url)}")

    def _shown(self, url: str) -> str:
        return redact_url(url, self.secret_params)[:300]


def _normal_host(host: str) -> str:
    try:
        return normalize_host(host).strip("[]")
    except BadURL:
        return host.lower()  # matches no URL's host


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects, redacted
    http_code: int
    bytes: int
    attempts: int


def backoff_seconds(url: str, attempt: int, options: FetchOptions) -> float:
    """The wait before retry ``attempt`` (1-based): exponential, capped, times a jitter in [0.5, 1.5)
    drawn from the URL, so that a rerun waits the same and a thousand URLs do not retry in step."""
    base = min(options.max_backoff_s, options.backoff_s * 2 ** (attempt - 1))
    return base * (0.5 + unit_interval(f"{url}#{attempt}", salt="fetch-backoff"))


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date; None if absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def make_pool(options: FetchOptions, resolve: net.Resolver | None = None) -> urllib3.PoolManager:
    """One connection pool per fetching task: keep-alive across that task's URLs; its connections
    reach public addresses only unless ``allow_private_networks`` (``resolve``: getaddrinfo)."""
    kw = {} if resolve is None else {"resolve": resolve}
    return net.make_pool(options.connections, allow_private=options.allow_private_networks, **kw)


def fetch(
    url: str,
    policy: FetchPolicy,
    sink: Sink,
    pool: urllib3.PoolManager,
    *,
    limiter: HostLimiter | None = None,
    headers: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    """Download ``url`` into ``sink`` with the retries the policy allows; raises :class:`FetchError`
    (its ``attempts`` set, its message redacted) when every attempt failed."""
    options = policy.options
    attempt = 0
    while True:
        attempt += 1
        try:
            result = _attempt(url, policy, sink, pool, headers or {}, limiter)
            return Fetched(policy.redact(result[0]), result[1], result[2], attempt)
        except FetchError as e:
            e.attempts = attempt
            e.message = policy.redact(e.message)  # a server's Location may carry a signature
            e.args = (e.message,)
            sink.reset()
            if not e.retryable or attempt > options.retries:
                raise
            wait = e.retry_after if e.retry_after is not None else backoff_seconds(url, attempt, options)
            sleep(wait)


def _attempt(
    url: str,
    policy: FetchPolicy,
    sink: Sink,
    pool: urllib3.PoolManager,
    base_headers: Mapping[str, str],
    limiter: HostLimiter | None,
) -> tuple[str, int, int]:
    options = policy.options
    budget = options.total_timeout_s  # spent only while a hop holds its host's slot
    timeout = urllib3.Timeout(connect=options.connect_timeout_s, read=options.read_timeout_s)
    first: WebURL | None = None
    current = url
    for hop in range(options.max_redirects + 1):
        target = policy.check(current, redirect=hop > 0)
        first = first or target
        headers = {"User-Agent": options.user_agent, "Accept-Encoding": "identity", **base_headers}
        if target.origin != first.origin:  # another port, host or scheme: no credentials
            headers = {k: v for k, v in headers.items() if k.lower() not in SENSITIVE}
        slot = limiter.slot(target.host) if limiter is not None else contextlib.nullcontext()
        with slot:
            started = time.monotonic()
            try:
                location = _hop(target, headers, timeout, max(0.0, budget), policy, sink, pool)
            finally:
                budget -= time.monotonic() - started
        if isinstance(location, tuple):
            return (target.request_url, *location)
        current = location
    raise FetchError(
        Code.REDIRECT_REFUSED,
        "too_many_redirects",
        f"more than {options.max_redirects} redirects from {policy._shown(url)}",
    )


def _hop(
    target: WebURL,
    headers: Mapping[str, str],
    timeout: urllib3.Timeout,
    seconds: float,
    policy: FetchPolicy,
    sink: Sink,
    pool: urllib3.PoolManager,
) -> str | tuple[int, int]:
    """One request: a redirect's next URL, or (status, bytes) once the body is in ``sink``."""
    options = policy.options
    resp = None
    with net.watching(seconds) as watch:
        try:
            resp = pool.request(
                "GET",
                target.request_url,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=timeout,
            )
            outcome = _response(resp, target, policy, sink)
        except net.AddressRefused as e:
            raise FetchError(Code.PRIVATE_ADDRESS, "private_address", str(e)) from None
        except Exception as e:
            if resp is not None:
                resp.close()  # a connection with an unread body is not put back in the pool
            if watch.fired:
                raise FetchError(
                    Code.NETWORK_ERROR,
                    "total_timeout",
                    f"the download took longer than {options.total_timeout_s:g} s",
                    http_code=resp.status if resp is not None else None,
                    retryable=True,
                ) from None
            if isinstance(e, FetchError):
                raise
            if isinstance(e, urllib3.exceptions.HTTPError | OSError):
                raise _network(e) from None
            raise
    # The watch is closed: nothing shuts this connection down any more, so it may go back to the pool
    # (unless the deadline passed just as the body ended).
    if watch.fired or isinstance(outcome, str):
        resp.close()  # not drained: a redirect's body could be endless
    else:
        resp.release_conn()
    return outcome


def _response(
    resp: urllib3.BaseHTTPResponse, target: WebURL, policy: FetchPolicy, sink: Sink
) -> str | tuple[int, int]:
    status = resp.status
    if status in REDIRECTS:
        location = resp.headers.get("Location")
        if not location:
            raise FetchError(
                Code.HTTP_ERROR,
                "redirect_without_location",
                f"HTTP {status} without Location",
                http_code=status,
            )
        return join_location(target, location)
    if status != 200:
        raise _status_error(status, resp.headers.get("Retry-After"), policy.options)
    cap = policy.max_bytes
    encoding = (resp.headers.get("Content-Encoding") or "").strip().lower()
    decoder = _decoder(encoding, status)
    declared = resp.headers.get("Content-Length")
    if decoder is None and cap is not None and declared and declared.isdigit() and int(declared) > cap:
        raise FetchError(
            Code.TOO_LARGE,
            "too_large",
            f"Content-Length {declared} is over the {cap}-byte cap",
            http_code=status,
        )
    received = 0

    def take(data: bytes) -> None:
        nonlocal received
        received += len(data)
        if cap is not None and received > cap:
            what = "decoded body" if decoder is not None else "body"
            raise FetchError(
                Code.TOO_LARGE,
                "too_large",
                f"the {what} passed the {cap}-byte cap while streaming",
                http_code=status,
            )
        if data:
            sink.write(data)

    for chunk in resp.stream(CHUNK, decode_content=False):
        if decoder is None:
            take(chunk)
            continue
        data = chunk
        while data:
            # max_length bounds what one compressed chunk may expand to in memory (a gzip bomb)
            take(_inflate(decoder, data, encoding, status))
            data = decoder.unconsumed_tail
    if decoder is not None:
        take(_inflate(decoder, b"", encoding, status, flush=True))
        if not decoder.eof:
            raise FetchError(
                Code.FETCH_FAILED,
                "content_encoding",
                f"the body's Content-Encoding {encoding} stream ends early",
                http_code=status,
            )
    return status, received


def _decoder(encoding: str, status: int):
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise FetchError(
        Code.FETCH_FAILED,
        "content_encoding",
        f"the server sent the body with Content-Encoding '{encoding[:40]}' although it was asked for "
        "identity; only gzip and deflate are undone",
        http_code=status,
    )


def _inflate(decoder, data: bytes, encoding: str, status: int, *, flush: bool = False) -> bytes:
    try:
        return decoder.flush() if flush else decoder.decompress(data, CHUNK)
    except zlib.error as e:
        raise FetchError(
            Code.FETCH_FAILED,
            "content_encoding",
            f"the body's Content-Encoding {encoding} cannot be undone: {e}",
            http_code=status,
        ) from None


def _network(e: Exception) -> FetchError:
    inner = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason else e
    name = type(inner).__name__
    cls = "timeout" if "Timeout" in name else "reset" if "Protocol" in name or "Reset" in name else "network"
    return FetchError(Code.NETWORK_ERROR, cls, f"{name}: {str(inner)[:300]}", retryable=True)


def _status_error(status: int, retry_after: str | None, options: FetchOptions) -> FetchError:
    if status in GONE:
        return FetchError(Code.URL_GONE, f"http_{status}", f"HTTP {status}", http_code=status)
    if status in (429, 503):
        wait = retry_after_seconds(retry_after)
        if wait is not None and wait > options.max_retry_after_s:
            code = Code.RATE_LIMITED if status == 429 else Code.HTTP_ERROR
            return FetchError(
                code,
                f"http_{status}",
                f"HTTP {status} with Retry-After {wait:.0f} s, over max_retry_after_s",
                http_code=status,
            )
        code = Code.RATE_LIMITED if status == 429 else Code.HTTP_ERROR
        return FetchError(
            code, f"http_{status}", f"HTTP {status}", http_code=status, retryable=True, retry_after=wait
        )
    retryable = status >= 500 or status == 408
    return FetchError(
        Code.HTTP_ERROR, f"http_{status}", f"HTTP {status}", http_code=status, retryable=retryable
    )
