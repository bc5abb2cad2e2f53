"""Where a fetch may connect, and for how long: urllib3 connections with two guards.

- **Addresses.** A connection resolves its host once, checks every address the name gave, and connects
  to a checked address (never resolving again, so DNS cannot answer one address for the check and
  another for the connection). Loopback, private, link-local, shared (100.64/10), reserved and
  multicast addresses are refused (:class:`AddressRefused`) unless ``allow_private_networks``; an
  IPv4 address inside IPv6 (mapped, 6to4, NAT64) is judged as the IPv4 address. TLS still verifies the
  host name: the socket is connected to an address, the certificate is checked against the name.
- **Deadline.** :class:`Watch` is a wall-clock deadline over everything one attempt does on the
  network. The sockets it covers are registered with it as they are made or reused, and one watchdog
  thread per process shuts them down when the deadline passes, so a server that drips a byte a second
  (which no per-read timeout catches) is cut off on time, in the handshake, the headers or the body.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

# getaddrinfo's signature: (host, port, family, type) -> [(family, type, proto, canonname, sockaddr)]
Resolver = Callable[..., list[tuple[Any, ...]]]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_problem(address: str) -> str:
    """Why a fetch may not connect to ``address`` ("" when it may): the kind of network it is on."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return address_problem(str(inner))
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "not public"
    return ""


class AddressRefused(Exception):
    """The host resolved only to addresses a fetch may not reach."""

    def __init__(self, host: str, address: str, kind: str):
        super().__init__(
            f"host '{host}' resolves to {address}, a {kind} address: fetching from loopback, private and "
            "link-local networks is refused (set options.fetch.allow_private_networks: true to allow it)"
        )
        self.host, self.address, self.kind = host, address, kind


def check_host(host: str, port: int, resolve: Resolver = socket.getaddrinfo) -> None:
    """Refuse (:class:`AddressRefused`) a host any of whose addresses a fetch may not reach: for
    clients that make their own connections (yt-dlp), where only a check beforehand is possible."""
    try:
        infos = resolve(host, port, 0, socket.SOCK_STREAM)
    except OSError:
        return  # the client will fail to resolve it too, and say so
    for info in infos:
        kind = address_problem(info[4][0])
        if kind:
            raise AddressRefused(host, info[4][0], kind)


# -- the deadline --


class Watch:
    """One attempt's deadline and the sockets it covers."""

    __slots__ = ("_closed", "_lock", "_socks", "deadline", "fired")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self._closed = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def attach(self, sock: socket.socket) -> None:
        """Cover ``sock`` (a connection's socket, plain or TLS) until :meth:`close`."""
        try:
            # A second descriptor of the same socket: it stays valid when TLS wraps (and detaches) the
            # first, and shutting it down ends every read on the connection.
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return
        with self._lock:
            if self._closed:
                dup.close()
                return
            self._socks.append(dup)
            if self.fired:
                _shut(dup)

    def fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            self.fired = True
            for s in self._socks:
                _shut(s)

    def close(self) -> bool:
        """Stop watching (the sockets are not touched after this returns); whether it had fired."""
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        return self.fired


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One thread per process that fires each watch at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._compact_at = 1024

    def add(self, watch: Watch) -> None:
        with self._cond:
            if len(self._heap) >= self._compact_at:
                # Finished attempts wait in the heap until their deadline; drop them now and then.
                self._heap = [entry for entry in self._heap if not entry[2].closed]
                heapq.heapify(self._heap)
                self._compact_at = max(1024, 2 * len(self._heap))
            heapq.heappush(self._heap, (watch.deadline, next(self._seq), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fetch-watchdog", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, watch = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            watch.fire()  # outside the lock: a watch already closed ignores it


_WATCHDOG = _Watchdog()
_local = threading.local()


@contextlib.contextmanager
def watching(seconds: float) -> Iterator[Watch]:
    """A deadline ``seconds`` from now over the connections this thread uses inside the block."""
    watch = Watch(time.monotonic() + seconds)
    _WATCHDOG.add(watch)
    previous = getattr(_local, "watch", None)
    _local.watch = watch
    try:
        yield watch
    finally:
        _local.watch = previous
        watch.close()


def _current() -> Watch | None:
    return getattr(_local, "watch", None)


# -- the connections --


class _Guard:
    def __init__(self, allow_private: bool, resolve: Resolver):
        self.allow_private, self.resolve = allow_private, resolve

    def connect(self, conn: HTTPConnection) -> socket.socket:
        host = conn._dns_host.strip("[]")  # the host urllib3 was given (brackets off an IPv6 address)
        watch = _current()
        timeout = conn.timeout if isinstance(conn.timeout, int | float) else None
        if watch is not None:
            timeout = watch.remaining() if timeout is None else min(timeout, watch.remaining())
        try:
            infos = self.resolve(host, conn.port, 0, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise NameResolutionError(conn.host, conn, e) from e
        usable, refused = [], None
        for info in infos:
            address = info[4][0]
            kind = "" if self.allow_private else address_problem(address)
            if kind:
                refused = refused or (address, kind)
            else:
                usable.append(info)
        if not usable:
            if refused is not None:
                raise AddressRefused(host, *refused)
            raise NameResolutionError(conn.host, conn, socket.gaierror("no address"))
        error: Exception | None = None
        for family, kind, proto, _, address in usable:
            sock = socket.socket(family, kind, proto)
            try:
                for option in conn.socket_options or ():
                    sock.setsockopt(*option)
                sock.settimeout(timeout)
                sock.connect(address)
            except TimeoutError as e:
                sock.close()
                error = ConnectTimeoutError(conn, f"Connection to {conn.host} timed out ({timeout} s)")
                error.__cause__ = e
                continue
            except OSError as e:
                sock.close()
                error = NewConnectionError(conn, f"Failed to establish a new connection: {e}")
                continue
            if watch is not None:
                watch.attach(sock)
                conn._clapcorpus_watch = watch  # type: ignore[attr-defined]
            return sock
        assert error is not None
        raise error


class _Watched:
    """Mixin: a reused connection's socket joins the current attempt's watch."""

    _guard: _Guard

    def _new_conn(self) -> socket.socket:
        return self._guard.connect(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = _current()
        sock = getattr(self, "sock", None)
        if watch is not None and sock is not None and getattr(self, "_clapcorpus_watch", None) is not watch:
            watch.attach(sock)
            self._clapcorpus_watch = watch
        super().request(*args, **kwargs)  # type: ignore[misc]


def make_pool(
    connections: int, *, allow_private: bool, resolve: Resolver = socket.getaddrinfo
) -> urllib3.PoolManager:
    """A pool manager whose connections resolve, check and connect as the module says; one per
    fetching task (keep-alive across its URLs). urllib3's own retries and redirects are off."""
    guard = _Guard(allow_private, resolve)
    conn_http = type("GuardedHTTPConnection", (_Watched, HTTPConnection), {"_guard": guard})
    conn_https = type("GuardedHTTPSConnection", (_Watched, HTTPSConnection), {"_guard": guard})
    pool = urllib3.PoolManager(num_pools=64, maxsize=connections, block=False, retries=False)
    pool.pool_classes_by_scheme = {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": conn_http}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": conn_https}),
    }
    return pool
