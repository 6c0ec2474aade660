"""One owner's share of a process, kept by pace: a token bucket per owner (a user, a
partner's channel), refilled at `per_second` up to a burst of twice that. What is over it
waits its turn, in order, and nothing is refused: one owner's flood of valid work takes
at most its pace of the process's CPU, and everyone else's goes through at once (issue 11)."""
from __future__ import annotations

import time
from typing import Hashable

# Owners whose bucket refilled say nothing: forgotten once this many are kept.
KEPT = 10_000


class Pace:
    def __init__(self) -> None:
        # owner -> [tokens (below 0: reserved by those waiting), when counted]
        self._buckets: dict[Hashable, list] = {}

    def wait(self, owner: Hashable, per_second: float, cost: float = 1) -> float:
        """Seconds this piece of `owner`'s work (`cost` tokens) waits before it starts: 0
        within the burst; each waiting piece holds its tokens in advance, so they start in
        turn. 0 always when `per_second` is 0 (no pace)."""
        if per_second <= 0:
            return 0.0
        burst, now = 2 * per_second, time.monotonic()
        bucket = self._buckets.get(owner)
        if bucket is None:
            if len(self._buckets) >= KEPT:
                self._buckets = {key: value for key, value in self._buckets.items()
                                 if value[0] + (now - value[1]) * per_second < burst}
            bucket = self._buckets[owner] = [burst, now]
        bucket[0] = min(burst, bucket[0] + (now - bucket[1]) * per_second) - cost
        bucket[1] = now
        return -bucket[0] / per_second if bucket[0] < 0 else 0.0
