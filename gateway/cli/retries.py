"""Which answers are worth sending again, and how long to wait first.

The gateway refuses work it cannot take right now with a 503 and Retry-After
(gateway/errors.py: `overloaded` when too many requests are in flight,
`shutting_down` while a replica drains, when another replica or the same one a
moment later will answer); a proxy in front may answer 429. Those are retried;
every other failure is an answer about the request itself and is reported at
once. The wait is capped so a large Retry-After cannot stall a run.
"""

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

RETRIES = 3
DEFAULT_WAIT_SECONDS = 1.0
MAX_WAIT_SECONDS = 5.0
# The problem codes (gateway/errors.py) a 503 is retried for; other 503s (the model
# server unavailable, a readiness document) say something a retry would not change.
# `decode_budget_exhausted`: other uploads held the decode memory; it frees within seconds.
RETRIED_CODES = frozenset({"overloaded", "shutting_down", "decode_budget_exhausted"})


def is_retried(status: int | None, body: Any) -> bool:
    """Whether an answer asks to be sent again: a 429, or a 503 with a RETRIED_CODES code."""
    if status == 429:
        return True
    return status == 503 and isinstance(body, dict) and body.get("code") in RETRIED_CODES


def wait_seconds(retry_after: str | None, now: datetime | None = None) -> float:
    """Seconds to wait from a Retry-After value, capped at MAX_WAIT_SECONDS.

    RFC 9110 section 10.2.3: either a number of seconds or an HTTP date. A missing
    or unreadable value waits DEFAULT_WAIT_SECONDS; a date in the past, nothing.
    """
    if retry_after is None:
        return DEFAULT_WAIT_SECONDS
    text = retry_after.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until(text, now or datetime.now(UTC))
    if seconds != seconds:  # NaN: float() accepts "nan"
        return DEFAULT_WAIT_SECONDS
    return min(max(seconds, 0.0), MAX_WAIT_SECONDS)


def _seconds_until(http_date: str, now: datetime) -> float:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return DEFAULT_WAIT_SECONDS
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; parsedate gives a naive time for "-0000".
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()
