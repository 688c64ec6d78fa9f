"""The retry policy both transports share: exponential backoff on retryable errors only."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import ClientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first, sleeping ``base * factor**i`` (at most ``cap``) before retry i."""

    retries: int = 3
    base: float = 0.1
    factor: float = 2.0
    cap: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base < 0 or self.factor < 1 or self.cap < 0:
            raise ValueError(f"invalid retry policy {self}")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        return min(self.cap, self.base * self.factor**retry)

    def call(self, fn: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
        """Run ``fn``; on a retryable :class:`ClientError` sleep and try again, up to ``retries`` times.

        Non-retryable errors (4xx, timeouts, server faults) propagate at once; after the last
        attempt the last error propagates.
        """
        retry = 0
        while True:
            try:
                return fn()
            except ClientError as e:
                if not e.retryable or retry >= self.retries:
                    raise
                sleep(self.delay(retry))
                retry += 1
