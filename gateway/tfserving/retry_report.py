"""A WARNING when a retry on another TF Serving replica answered what the first attempt could not.

With several replicas behind one gRPC target, a replica that hangs or serves
other versions shows up only as retries that succeed (grpc_transport.py):
the requests are answered, so nothing else would tell an operator. The
warning is rate-limited per gRPC status, carrying the count since the last
one, so a replica failing every third call logs once a minute, not per call.
"""

import logging
import time

import grpc

logger = logging.getLogger(__name__)

WARNING_INTERVAL_SECONDS = 60.0


class RetryReport:
    """A WARNING when a retry answered what a first attempt could not, once a minute per status.

    gRPC does not say which replica a call went to, so the warning names the
    target and the status; the replicas' own logs tell which one hangs or lacks
    the version.
    """

    def __init__(self, target: str, interval_seconds: float = WARNING_INTERVAL_SECONDS):
        self._target = target
        self._interval_seconds = interval_seconds
        self._last_warned: dict[str, float] = {}
        self._unreported: dict[str, int] = {}

    def answered_after(self, failure: grpc.aio.AioRpcError) -> None:
        status = failure.code().name
        count = self._unreported.get(status, 0) + 1
        now = time.monotonic()
        last = self._last_warned.get(status)
        if last is not None and now - last < self._interval_seconds:
            self._unreported[status] = count
            return
        self._last_warned[status], self._unreported[status] = now, 0
        logger.warning(
            "a TF Serving replica behind %s failed a predict with %s and a second attempt "
            "answered it (%d such since the last warning; a hung replica, or one serving "
            "other versions?): %s",
            self._target,
            status,
            count,
            (failure.details() or "").strip()[:200],
        )
