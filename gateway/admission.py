"""Who gets in: optional API keys, then a hard cap on /predict requests in flight.

Both answer at once, before the body is read: a refused request costs the
gateway almost nothing, and overload never turns into an unbounded queue. A
draining gateway (after SIGTERM, gateway/drain.py) admits no new prediction;
the ones it admitted before are what the drain waits for.
"""

import asyncio
import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import paths
from gateway.drain import drain_of
from gateway.errors import Overloaded, ShuttingDown, Unauthorized
from gateway.problems import problem_response

# Probes and the service description stay open so orchestrators need no key.
OPEN_PATHS = frozenset({paths.INDEX, paths.HEALTH, paths.HEALTH_LIVE, paths.HEALTH_READY})


def is_open(path: str) -> bool:
    """Whether `path` needs no key: OPEN_PATHS, and the demo page with its assets, which
    hold no data (the page's calls to /predict carry the user's key)."""
    return path in OPEN_PATHS or paths.is_demo_page(path)


class ApiKeyAuth:
    """401 unless the request carries one of the keys (X-API-Key or Authorization: Bearer)."""

    def __init__(self, app: ASGIApp, keys: frozenset[str]):
        self.app = app
        self._keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]) or self._presented_ok(scope):
            await self.app(scope, receive, send)
            return
        response = problem_response(
            Unauthorized("Send a valid API key in the X-API-Key header (or Authorization: Bearer).")
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="ml-inference-pipeline"'
        await response(scope, receive, send)

    def _presented_ok(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        presented = headers.get(b"x-api-key", b"")
        bearer = headers.get(b"authorization", b"")
        if not presented and bearer.lower().startswith(b"bearer "):
            presented = bearer[7:].strip()
        # Compare against every key in constant time, so timing reveals nothing.
        return any([hmac.compare_digest(presented, key) for key in self._keys])


class InFlightLimit:
    """503 with Retry-After once `limit` POST /predict requests are already being handled.

    The count is the app's Drain's (gateway/drain.py), so the server can wait for
    the predictions admitted here; while draining every new one gets 503
    `shutting_down` instead.
    """

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not paths.is_prediction(scope):
            await self.app(scope, receive, send)
            return
        drain = drain_of(scope["app"])
        if drain.draining:
            refusal = ShuttingDown(
                "This gateway is shutting down and takes no new predictions; "
                "retry, and another replica will answer."
            )
            # Closing the connection sends the client's retry to a fresh one, which a
            # load balancer gives to a replica that is not going away.
            await problem_response(refusal, {"Connection": "close"})(scope, receive, send)
            return
        if drain.in_flight >= self.limit:
            error = Overloaded(
                f"{drain.in_flight} requests are already in flight (MAX_IN_FLIGHT={self.limit}); "
                "retry shortly."
            )
            await problem_response(error)(scope, receive, send)
            return
        drain.admit()
        released = answering = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                drain.release()

        async def send_then_release(message: Message) -> None:
            nonlocal answering
            answering = True
            # Free the slot as the answer's last byte goes out: the framework's
            # clean-up after it (closing a spooled upload in a worker thread)
            # must not make a client's next request find the cap still full.
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                release()

        try:
            await self.app(scope, receive, send_then_release)
        except asyncio.CancelledError:
            if not drain.draining or answering:
                raise
            # Uvicorn cancels what SHUTDOWN_TIMEOUT_SECONDS left running; nothing
            # awaits this task's result, so the client hears why (503, counted as
            # shutting_down) instead of uvicorn's bare 500 and a logged traceback.
            cut_off = ShuttingDown(
                "This gateway shut down before it could answer (SHUTDOWN_TIMEOUT_SECONDS); retry."
            )
            await problem_response(cut_off, {"Connection": "close"})(scope, receive, send)
        finally:
            release()
