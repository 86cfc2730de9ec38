"""How the tests call the gateway: the requests a user's curl makes, over a socket or in-process."""

import contextlib
from collections.abc import AsyncIterator

import httpx

from fake_backend import FakeBackend
from gateway.app import create_app
from gateway.backend import Backend
from gateway.lanes import build_lane_backend
from gateway.settings import Settings


def post_image(
    url: str, data: bytes, filename: str = "image.bin", **params: int | str
) -> httpx.Response:
    """POST `data` to the gateway at `url` (/predict) as the multipart field `file`."""
    return httpx.post(
        f"{url}/predict", files={"file": (filename, data)}, params=params, timeout=60.0
    )


async def post_image_in_process(
    client: httpx.AsyncClient, data: bytes, filename: str = "image.bin", **params: int | str
) -> httpx.Response:
    """The same request as `post_image`, through an `in_process` client."""
    return await client.post("/predict", files={"file": (filename, data)}, params=params)


@contextlib.asynccontextmanager
async def in_process(settings: Settings, backend: Backend) -> AsyncIterator[httpx.AsyncClient]:
    """The app `create_app` builds, its lifespan running, called without a socket.

    httpx's ASGITransport does not run the lifespan, so it is entered here, as
    uvicorn would. An exception that escapes the app becomes the 500 a real client
    would get, not an exception in the test.
    """
    lanes = backend.open_lane if isinstance(backend, FakeBackend) else build_lane_backend
    app = create_app(settings, backend, lanes)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client
