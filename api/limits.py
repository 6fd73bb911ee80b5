"""Rate limits per API token: a fixed window of `limit` requests per `window` seconds.

With `CRM_REDIS_URL` set the counters live in Redis, so every worker and every server shares them;
otherwise each process counts for itself (one worker, or tests). Every authenticated response
carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (seconds until the window
ends); a request over the limit gets a 429 with `Retry-After`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Protocol

DEFAULT_LIMIT = 600  # requests per window and token
DEFAULT_WINDOW = 60  # seconds


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset: int  # seconds until the window ends

    @property
    def exceeded(self) -> bool:
        return self.remaining < 0

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(max(0, self.remaining)),
                "RateLimit-Reset": str(self.reset)}


class Limiter(Protocol):
    limit: int
    window: int

    def hit(self, key: str) -> Quota: ...


class MemoryLimiter:
    """Counters in this process (fixed windows; old windows are dropped as new ones start)."""

    def __init__(self, limit: int = DEFAULT_LIMIT, window: int = DEFAULT_WINDOW, clock=time.time) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Quota:
        now = self.clock()
        start = int(now // self.window)
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] == start}
            count = self._counts.get((key, start), 0) + 1
            self._counts[(key, start)] = count
        reset = max(1, int((start + 1) * self.window - now + 0.999))
        return Quota(self.limit, self.limit - count, reset)


class RedisLimiter:
    """Counters in Redis: INCR of the window's key, which expires with the window."""

    def __init__(self, url: str, limit: int = DEFAULT_LIMIT, window: int = DEFAULT_WINDOW, clock=time.time) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2)
        self.limit, self.window, self.clock = limit, window, clock

    def hit(self, key: str) -> Quota:
        now = self.clock()
        start = int(now // self.window)
        name = f"crm:ratelimit:{key}:{start}"
        pipe = self.client.pipeline()
        pipe.incr(name)
        pipe.expire(name, self.window + 1)
        count = int(pipe.execute()[0])
        reset = max(1, int((start + 1) * self.window - now + 0.999))
        return Quota(self.limit, self.limit - count, reset)


def limiter_from_environment() -> Limiter:
    """`CRM_API_RATE_LIMIT` requests per `CRM_API_RATE_WINDOW` seconds; Redis when `CRM_REDIS_URL` is set."""
    limit = int(os.environ.get("CRM_API_RATE_LIMIT", "") or DEFAULT_LIMIT)
    window = int(os.environ.get("CRM_API_RATE_WINDOW", "") or DEFAULT_WINDOW)
    url = os.environ.get("CRM_REDIS_URL", "").strip()
    return RedisLimiter(url, limit, window) if url else MemoryLimiter(limit, window)
