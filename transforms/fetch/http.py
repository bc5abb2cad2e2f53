"""One URL's bytes over HTTP(S), the way a crawler at scale must fetch them.

- timeouts: connecting, each wait for more bytes, and the whole attempt (a server that drips one byte
  a second passes every read timeout but not the attempt's);
- retries for what may pass (timeouts, resets, 429, 5xx), waiting ``backoff_s * 2**n`` scaled by a
  jitter drawn from the URL (reproducible, and still spread across URLs), or what ``Retry-After`` says;
- the byte cap counted on the bytes received, whatever ``Content-Length`` claims;
- redirects followed by hand, each hop checked against the allowed schemes and hosts, so a redirect
  to ``file://`` or to another host is refused, and a loop ends at ``max_redirects``;
- no cookie jar at all, and ``Authorization``/``Cookie`` headers dropped once a redirect leaves the
  URL's own host.

urllib3 is used directly (no ``requests`` session): it never turns a URL's ``user:pass@`` into a
header, keeps no cookies, and its own retry and redirect logic is switched off.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import urllib3

from clap_corpus.core.hashing import unit_interval
from clap_corpus.core.rejects import Code
from clap_corpus.transforms.fetch.config import FetchOptions
from clap_corpus.transforms.fetch.limits import HostLimiter

CHUNK = 1 << 16
REDIRECTS = frozenset({301, 302, 303, 307, 308})
GONE = frozenset({404, 410})
# Headers that carry who the client is; never sent to a host the URL did not name.
SENSITIVE = frozenset({"authorization", "cookie", "proxy-authorization"})


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

    def refuse(self, url: str) -> str:
        """Why ``url`` may not be requested ("" when it may)."""
        parts = urlsplit(url)
        scheme = (parts.scheme or "").lower()
        if scheme not in self.allowed_schemes or scheme not in ("http", "https"):
            return f"scheme '{scheme}' is not allowed"
        host = (parts.hostname or "").lower()
        if not host:
            return "the URL has no host"
        if self.allowed_hosts and host not in self.allowed_hosts:
            return f"host '{host}' is not allowed"
        return ""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
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


def make_pool(options: FetchOptions) -> urllib3.PoolManager:
    """One connection pool per fetching task: keep-alive across that task's URLs."""
    return urllib3.PoolManager(num_pools=64, maxsize=options.connections, block=False, retries=False)


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
    (its ``attempts`` set) when every attempt failed."""
    options = policy.options
    attempt = 0
    while True:
        attempt += 1
        try:
            if limiter is None:
                result = _attempt(url, policy, sink, pool, headers or {})
            else:
                with limiter.slot(_host(url)):
                    result = _attempt(url, policy, sink, pool, headers or {})
            return Fetched(result[0], result[1], result[2], attempt)
        except FetchError as e:
            e.attempts = attempt
            sink.reset()
            if not e.retryable or attempt > options.retries:
                raise
            wait = e.retry_after if e.retry_after is not None else backoff_seconds(url, attempt, options)
            sleep(wait)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _attempt(
    url: str, policy: FetchPolicy, sink: Sink, pool: urllib3.PoolManager, base_headers: Mapping[str, str]
) -> tuple[str, int, int]:
    options = policy.options
    deadline = time.monotonic() + options.total_timeout_s
    timeout = urllib3.Timeout(connect=options.connect_timeout_s, read=options.read_timeout_s)
    origin = _host(url)
    current = url
    for hop in range(options.max_redirects + 1):
        why = policy.refuse(current)
        if why:
            if hop == 0:
                raise FetchError(Code.REDIRECT_REFUSED, "url_refused", f"{why}: {current}")
            raise FetchError(Code.REDIRECT_REFUSED, "redirect_refused", f"redirect refused, {why}: {current}")
        headers = {"User-Agent": options.user_agent, "Accept-Encoding": "identity", **base_headers}
        if _host(current) != origin:
            headers = {k: v for k, v in headers.items() if k.lower() not in SENSITIVE}
        try:
            resp = pool.request(
                "GET",
                current,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=timeout,
            )
        except urllib3.exceptions.HTTPError as e:
            raise _network(e) from None
        try:
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
                current = urljoin(current, location)
                resp.close()  # not drained: a redirect's body could be endless
                continue
            if status != 200:
                raise _status_error(status, resp.headers.get("Retry-After"), options)
            declared = resp.headers.get("Content-Length")
            if (
                policy.max_bytes is not None
                and declared
                and declared.isdigit()
                and int(declared) > policy.max_bytes
            ):
                raise FetchError(
                    Code.TOO_LARGE,
                    "too_large",
                    f"Content-Length {declared} is over the {policy.max_bytes}-byte cap",
                    http_code=status,
                )
            received = 0
            for chunk in resp.stream(CHUNK, decode_content=False):
                received += len(chunk)
                if policy.max_bytes is not None and received > policy.max_bytes:
                    raise FetchError(
                        Code.TOO_LARGE,
                        "too_large",
                        f"the body passed the {policy.max_bytes}-byte cap while streaming",
                        http_code=status,
                    )
                if time.monotonic() > deadline:
                    raise FetchError(
                        Code.NETWORK_ERROR,
                        "total_timeout",
                        f"the download took longer than {options.total_timeout_s:g} s",
                        http_code=status,
                        retryable=True,
                    )
                sink.write(chunk)
            resp.release_conn()
            return current, status, received
        except FetchError:
            resp.close()  # a connection with an unread body is not put back in the pool
            raise
        except (urllib3.exceptions.HTTPError, OSError) as e:
            resp.close()
            raise _network(e) from None
    raise FetchError(
        Code.REDIRECT_REFUSED, "too_many_redirects", f"more than {options.max_redirects} redirects from {url}"
    )


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
