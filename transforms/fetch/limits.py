"""Per-host concurrency and request rate, shared by every fetching thread of one worker process.

On Dataflow each worker process (one per vCPU with the default harness) has its own limiter, so a
host sees at most ``max_per_host`` x the job's worker processes concurrent requests; set the limits
with the number of workers in mind.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


class HostLimiter:
    def __init__(self, max_per_host: int, requests_per_second: float = 0.0):
        self.max_per_host = max_per_host
        self.interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next: dict[str, float] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s concurrent slots, starting no sooner than its rate allows."""
        with self._lock:
            sem = self._slots.setdefault(host, threading.BoundedSemaphore(self.max_per_host))
        with sem:
            if self.interval:
                with self._lock:
                    now = time.monotonic()
                    start = max(now, self._next.get(host, 0.0))
                    self._next[host] = start + self.interval
                if start > now:
                    time.sleep(start - now)
            yield


_SHARED: dict[tuple[int, float], HostLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(max_per_host: int, requests_per_second: float) -> HostLimiter:
    """The process's limiter for these limits: every fetching task in a worker process shares it."""
    with _SHARED_LOCK:
        return _SHARED.setdefault(
            (max_per_host, requests_per_second), HostLimiter(max_per_host, requests_per_second)
        )
