"""What became of an answer: the status that left, and whether the client had gone.

The access log and the accounting middleware both learn a request's status by
watching the messages the app sends, never by reading a body back; and both
must tell an answer the server could not write (the client went away) from one
that left. One wrapper around ASGI's `send` records both facts for either.
"""

from starlette.types import Message, Send


class Delivery:
    """Wrap `send`; pass `self.send` to the app and read `status` and `client_gone` after."""

    def __init__(self, send: Send, *, reraise: bool) -> None:
        # reraise=True hands the failure on to whoever called `send` (an outer
        # middleware re-raises so the ones inside it see it too); False drops the
        # answer there, and every message after it, rather than end in a 500.
        self._send = send
        self._reraise = reraise
        self.status = 0  # 0 until http.response.start leaves
        self.client_gone = False

    async def send(self, message: Message) -> None:
        """Forward `message`, noting the status it starts and a write that failed."""
        if self.client_gone and not self._reraise:
            return
        if message["type"] == "http.response.start":
            self.status = message["status"]
        try:
            await self._send(message)
        except (OSError, RuntimeError):
            # The server could not write: the client has gone. ASGI servers raise
            # OSError; uvicorn on uvloop raises RuntimeError for a pipelined request
            # whose connection closed.
            self.client_gone = True
            if self._reraise:
                raise
