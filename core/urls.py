"""Web URLs read one way only, and written without their secrets.

**One reading.** urllib3 connects, so a web URL is read by urllib3's parser, and a URL that
``urllib.parse`` would read differently is refused (:class:`BadURL`): a backslash
(``http://a.test\\@b.test/`` is host ``b.test`` to one and ``a.test`` to the other), control
characters or white space anywhere before the path, a percent-encoded host, a host that is not valid
IDNA. Host names are compared in one form: IDNA A-labels, lower case, without a trailing dot
(:func:`normalize_host`), for the URL and for ``allowed_hosts`` alike. The URL that is requested is
rebuilt from that one reading (:attr:`WebURL.request_url`), so the host that was checked is the host
connected to.

**Redaction.** What a run writes about a URL (sample keys and ``source_id``, rejects, status tables,
the cache's entries, logs) goes through :func:`redact_url`: the userinfo (``user:password@``) is
dropped, and the value of every query (or fragment) parameter named in the source's
``secret_query_params`` (:data:`SECRET_QUERY_PARAMS` by default; names compared without regard to
case) becomes ``REDACTED``. Signing dates and expiries are on the list too, so that a re-signed URL of
the same object redacts to the same text: same key, same cache entry.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

REDACTED = "REDACTED"

# Query parameters that carry a credential, or change whenever a URL is signed again. AWS S3 and
# CloudFront, Google Cloud Storage (V4 and V2 signing), Azure SAS's signature, and the usual
# token / API key names. A source whose URLs carry another one lists it in `secret_query_params`.
SECRET_QUERY_PARAMS: tuple[str, ...] = (
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-date",
    "x-amz-expires",
    "x-goog-signature",
    "x-goog-credential",
    "x-goog-date",
    "x-goog-expires",
    "googleaccessid",
    "signature",
    "expires",
    "policy",
    "key-pair-id",
    "sig",
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "auth",
    "password",
    "api_key",
    "apikey",
    "key",
)

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
# A URL inside free text (an error message): up to white space, a quote or an angle bracket.
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


class BadURL(ValueError):
    """A web URL that cannot be read one way only; the message says why."""


@dataclass(frozen=True)
class WebURL:
    """One web URL as urllib3 reads it (and so as it is requested)."""

    scheme: str  # http or https
    host: str  # IDNA A-labels, lower case, no trailing dot; an IPv6 address in brackets
    port: int | None  # None: the scheme's default
    target: str  # path and query, percent-encoded as sent
    has_userinfo: bool

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else (443 if self.scheme == "https" else 80)

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): what credentials are bound to."""
        return self.scheme, self.host, self.effective_port

    @property
    def bare_host(self) -> str:
        """The host without IPv6 brackets (what the resolver gets)."""
        return self.host.strip("[]")

    @property
    def request_url(self) -> str:
        """The URL to request: no userinfo, no fragment, rebuilt from this reading."""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.host}{port}{self.target}"


def _authority(url: str) -> str:
    """The text between ``//`` and the first ``/``, ``?`` or ``#`` (urllib.parse's authority)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


@functools.lru_cache(maxsize=4096)
def normalize_host(host: str) -> str:
    """A host name in its one compared form: IDNA A-labels (as urllib3 encodes them), lower case,
    without a trailing dot. Raises :class:`BadURL` when it is no valid host."""
    text = host.strip()
    if not text or _CONTROL.search(text) or "\\" in text:
        raise BadURL(f"{host!r} is not a host name")
    try:
        parsed = parse_url(f"http://{text}/")
    except LocationParseError as e:
        raise BadURL(f"{host!r} is not a host name ({e})") from None
    if not parsed.host or parsed.port is not None or parsed.auth is not None or parsed.path != "/":
        raise BadURL(f"{host!r} is not a host name")
    return parsed.host.lower().rstrip(".")


@functools.lru_cache(maxsize=4096)  # a URL is read by the router, the check and the cap: once
def parse_web_url(url: str) -> WebURL:
    """Read an http(s) URL the one way it is requested; raises :class:`BadURL` if it cannot be."""
    if "\\" in url:
        raise BadURL("a backslash in the URL (parsers disagree on where its host ends)")
    if re.search(r"[\x00-\x1f\x7f]", url):
        raise BadURL("control characters in the URL")
    authority = _authority(url)
    if _CONTROL.search(authority):
        raise BadURL("white space in the URL's host part")
    if "%" in authority.rsplit("@", 1)[-1]:
        raise BadURL("a percent-encoded host")
    try:
        ours = parse_url(url)
    except LocationParseError as e:
        raise BadURL(f"not a URL urllib3 can read ({e})") from None
    scheme = (ours.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise BadURL(f"not an http(s) URL (scheme '{scheme}')")
    if not ours.host:
        raise BadURL("the URL has no host")
    try:
        theirs = urlsplit(url)
        their_port = theirs.port
    except ValueError as e:
        raise BadURL(f"not a URL urllib.parse can read ({e})") from None
    their_host = (theirs.hostname or "").rstrip(".")
    host = ours.host.lower().rstrip(".")
    try:
        same = their_host == host.strip("[]") or normalize_host(their_host) == host
    except BadURL:
        same = False
    if not same or their_port != ours.port or theirs.scheme.lower() != scheme:
        raise BadURL(
            f"the URL's host is read differently by urllib.parse ({their_host or '-'}:{their_port}) "
            f"and urllib3 ({host}:{ours.port})"
        )
    if ours.port == 0:
        raise BadURL("port 0")
    return WebURL(scheme, host, ours.port, ours.request_uri or "/", ours.auth is not None)


def join_location(base: WebURL, location: str) -> str:
    """A redirect's ``Location`` resolved against the URL that answered it (not yet checked)."""
    return urljoin(base.request_url, location.strip())


def _redact_params(text: str, secret: frozenset[str]) -> str:
    if not text or not secret:
        return text
    parts = re.split(r"([&;])", text)
    for i in range(0, len(parts), 2):
        name, eq, _ = parts[i].partition("=")
        if eq and unquote(name).strip().lower() in secret:
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


def redact_url(url: str, secret_params: tuple[str, ...] | frozenset[str] = SECRET_QUERY_PARAMS) -> str:
    """``url`` as it may be written: without userinfo, the secret parameters' values ``REDACTED``.

    Works on the text (any scheme, and URLs that :func:`parse_web_url` refuses), keeping everything
    else as it was, so that the same URL always redacts to the same text."""
    m = _SCHEME.match(url)
    if not m or "://" not in url[: m.end() + 2]:
        return url
    head, rest = url.split("://", 1)
    authority = _authority(url)
    after = rest[len(authority) :]
    if "@" in authority:  # userinfo: everything to the last @, whatever it holds (backslashes too)
        authority = authority.rsplit("@", 1)[1]
    secret = frozenset(p.lower() for p in secret_params)
    before_fragment, hash_, fragment = after.partition("#")
    path, q, query = before_fragment.partition("?")
    out = f"{head}://{authority}{path}"
    if q:
        out += "?" + _redact_params(query, secret)
    if hash_:
        out += "#" + _redact_params(fragment, secret)
    return out


def url_identity(url: str, secret_params: tuple[str, ...] | frozenset[str] = SECRET_QUERY_PARAMS) -> str:
    """What a URL names, as written: redacted and without its fragment (never sent to the server).
    Rows whose URLs have the same identity are fetched once and share one cache entry."""
    return redact_url(url, secret_params).split("#", 1)[0]


def redact_text(text: str, secret_params: tuple[str, ...] | frozenset[str] = SECRET_QUERY_PARAMS) -> str:
    """Free text (an error message) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0), secret_params), text)


def has_secrets(url: str, secret_params: tuple[str, ...] | frozenset[str] = SECRET_QUERY_PARAMS) -> bool:
    return redact_url(url, secret_params) != url
