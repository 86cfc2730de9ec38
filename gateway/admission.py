"""Who gets in: optional API keys, then a hard cap on /predict requests in flight.

Both answer at once, before the body is read: a refused request costs the
gateway almost nothing, and overload never turns into an unbounded queue.
"""

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import paths
from gateway.errors import Overloaded, Unauthorized
from gateway.problems import problem_response

# Probes and the service description stay open so orchestrators need no key.
OPEN_PATHS = frozenset({paths.INDEX, paths.HEALTH, paths.HEALTH_LIVE, paths.HEALTH_READY})


class ApiKeyAuth:
    """401 unless the request carries one of the keys (X-API-Key or Authorization: Bearer)."""

    def __init__(self, app: ASGIApp, keys: frozenset[str]):
        self.app = app
        self._keys = [key.encode() for key in keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._presented_ok(scope):
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
    """503 with Retry-After once `limit` POST /predict requests are already being handled."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not paths.is_prediction(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            error = Overloaded(
                f"{self.in_flight} requests are already in flight (MAX_IN_FLIGHT={self.limit}); "
                "retry shortly."
            )
            await problem_response(error)(scope, receive, send)
            return
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        async def send_then_release(message: Message) -> None:
            # Free the slot as the answer's last byte goes out: the framework's
            # clean-up after it (closing a spooled upload in a worker thread)
            # must not make a client's next request find the cap still full.
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                release()

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            release()
