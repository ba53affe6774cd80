"""Dropping events seen before: delivery is at-least-once, and a frame redelivered to
another worker yields events with the same ids."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class Deduplicator:
    """Remembers up to ``max_size`` ids for ``ttl_s`` each; the oldest go first, so memory
    stays bounded however many events flow."""

    def __init__(
        self, max_size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._max_size = max_size
        self._ttl_s = ttl_s
        self._clock = clock
        self._seen: OrderedDict[Hashable, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def seen_before(self, key: Hashable) -> bool:
        """True if ``key`` was seen within the TTL; records it either way."""
        now = self._clock()
        self._expire(now)
        if key in self._seen:
            return True
        self._seen[key] = now + self._ttl_s
        if len(self._seen) > self._max_size:
            self._seen.popitem(last=False)
        return False

    def _expire(self, now: float) -> None:
        # Insertion order is expiry order (one TTL for all), so expired ids are in front.
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now:
                return
            del self._seen[key]
