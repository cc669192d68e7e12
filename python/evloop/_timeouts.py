"""Seconds as the library takes them: whole milliseconds, rounded up, so
that no wait, timer or idle timeout ever ends early."""

from __future__ import annotations

import math
from typing import Optional


def ceil_ms(seconds: float) -> int:
    """Seconds as whole milliseconds, rounded up. As math.ceil:
    OverflowError for an infinity, ValueError for NaN."""
    return math.ceil(seconds * 1000)


def timeout_ms(timeout: Optional[float]) -> int:
    """A wait's timeout as the library takes it: None waits for ever (-1),
    anything not positive does not wait (0), the rest is ceil_ms. As
    EpollSelector: OverflowError for infinity and for more than an int of
    milliseconds (about 24.8 days), ValueError for NaN."""
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    ms = ceil_ms(timeout)
    if ms > 0x7FFFFFFF:
        raise OverflowError("timeout is too large")
    return ms


def idle_ms(seconds: Optional[float]) -> int:
    """An idle timeout (a uint32_t of milliseconds; 0: none) from seconds;
    None or 0: none. ValueError for a negative, NaN or too long one."""
    if not seconds:
        return 0
    if seconds < 0:
        raise ValueError(f"a timeout cannot be negative: {seconds!r}")
    if seconds != seconds:
        raise ValueError(f"a timeout must be a number of seconds, not {seconds!r}")
    if seconds == math.inf or ceil_ms(seconds) > 0xFFFFFFFF:
        raise ValueError(f"timeout too long: {seconds!r}")
    return ceil_ms(seconds)
