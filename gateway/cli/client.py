"""The HTTP side: one pooled httpx client, and every outcome as an `Answer`, never an exception.

A run of many files must report each file's fate and go on, so transport
failures (refused connection, timeout) are turned into an Answer that says in
words what could not be reached, here at the boundary; the commands and the
renderers never see an httpx exception. A 2xx whose body is not the document
asked for becomes a failed Answer too (`Answer.checked`), and answers that ask
to be sent again later are retried here (gateway/cli/retries.py).
"""

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from gateway.cli.inputs import read_regular_file
from gateway.cli.retries import RETRIES, is_retried, wait_seconds
from gateway.cli.shapes import prediction_fault

# The media types the gateway decodes (gateway/image_formats.py), by file extension.
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}
# Anything else goes as bytes of no declared kind: the gateway decides what they are.
UNKNOWN_MEDIA_TYPE = "application/octet-stream"
_UNSAFE_IN_QUOTES = re.compile(r'[^\x20-\x7e]|["\\]')


@dataclass(frozen=True)
class Answer:
    """What one request came to: the gateway's status and body, or why there was none."""

    status: int | None = None
    body: Any = None
    error: str | None = None

    @property
    def is_2xx(self) -> bool:
        """Whether the gateway answered with a success status (whatever the body says)."""
        return self.status is not None and 200 <= self.status < 300

    @property
    def ok(self) -> bool:
        """A 2xx not found unexpected (`checked`) whose body does not say `"success": false`."""
        if self.error is not None or not self.is_2xx:
            return False
        return not (isinstance(self.body, dict) and self.body.get("success") is False)

    def checked(self, fault_of: Callable[[Any], str | None]) -> "Answer":
        """This answer, or a failed one (status and body kept) when it is a 2xx that
        `fault_of` finds is not the document asked for (gateway/cli/shapes.py)."""
        fault = fault_of(self.body) if self.error is None and self.is_2xx else None
        if fault is None:
            return self
        return replace(self, error=f"unexpected answer from the gateway: {fault}")


def media_type_of(path: Path) -> str:
    """The Content-Type a file is sent with, from its extension."""
    return MEDIA_TYPES.get(path.suffix.lower(), UNKNOWN_MEDIA_TYPE)


def content_disposition(filename: str) -> str:
    """A Content-Disposition header naming the file; header values must be plain ASCII.

    Characters a quoted string cannot carry as is (quotes, backslashes, non-ASCII)
    become "_": the name is for the answer's `filename` field only.
    """
    return f'attachment; filename="{_UNSAFE_IN_QUOTES.sub("_", filename)}"'


class GatewayClient:
    """Requests to one gateway over one keep-alive connection pool."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout_seconds: float,
        connections: int = 1,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            # As many connections as requests in flight, each kept for the next file.
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def get(self, path: str) -> Answer:
        """GET one of the gateway's documents."""
        return await self._send(lambda: self._http.build_request("GET", path))

    async def predict(self, file: Path, top_k: int | None, raw: bool) -> Answer:
        """POST one file to /predict, read only now: one file in memory per request in flight.

        A retry sends the same bytes again: the file is read once.
        """
        try:
            # In a thread: the other requests go on while a slow disk is read.
            data = await asyncio.to_thread(read_regular_file, file)
        except OSError as exc:
            return Answer(error=f"cannot read the file: {exc.strerror or exc}")
        params = {"top_k": top_k} if top_k is not None else {}

        def build() -> httpx.Request:
            if raw:
                headers = {
                    "Content-Type": media_type_of(file),
                    "Content-Disposition": content_disposition(file.name),
                }
                return self._http.build_request(
                    "POST", "/predict", params=params, content=data, headers=headers
                )
            files = {"file": (file.name, data, media_type_of(file))}
            return self._http.build_request("POST", "/predict", params=params, files=files)

        answer = await self._send(build)
        return answer.checked(prediction_fault)

    async def _send(self, build: Callable[[], httpx.Request]) -> Answer:
        """Send a request built afresh for each attempt, retrying what asks to be retried."""
        retries_left = RETRIES
        while True:
            answer, retry_after = await self._exchange(build())
            if retries_left == 0 or not is_retried(answer.status, answer.body):
                return answer
            retries_left -= 1
            await asyncio.sleep(wait_seconds(retry_after))

    async def _exchange(self, request: httpx.Request) -> tuple[Answer, str | None]:
        """One request and its whole answer, with the Retry-After header the answer carried."""
        where = f"{self.url}{request.url.path}"
        try:
            # httpx's timeout bounds each read, so a body trickled a byte at a time
            # would keep it waiting for ever: this bounds the whole exchange.
            async with asyncio.timeout(self.timeout_seconds):
                response = await self._http.send(request)
        except (TimeoutError, httpx.TimeoutException):
            return Answer(error=f"no answer from {where} within {self.timeout_seconds:g} s"), None
        except httpx.ConnectError as exc:
            return Answer(error=f"could not connect to {self.url}: {_reason(exc)}"), None
        except httpx.HTTPError as exc:
            return Answer(error=f"the request to {where} failed: {_reason(exc)}"), None
        answer = Answer(status=response.status_code, body=_body_of(response))
        return answer, response.headers.get("retry-after")


def _body_of(response: httpx.Response) -> Any:
    """The JSON body, or the text when it is not JSON (a proxy's HTML error page)."""
    kind = response.headers.get("content-type", "")
    if "json" in kind:
        try:
            return response.json()
        except ValueError:
            pass
    return response.text


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
