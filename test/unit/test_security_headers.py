"""Security headers on every answer, and a Content-Security-Policy that fits what each page loads.

The real app in-process, a fake backend behind it; what a real browser makes of
the demo page's policy is in test/e2e/test_demo_page_browser.py.
"""

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from api_client import in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.app import create_app
from gateway.security_headers import API_POLICY, DOCS_POLICY, PAGE_POLICY, SecurityHeaders

KEY = "key-headers-2b8e41f7"
COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
# Where a fetch of each kind of resource is governed (CSP Level 3 fallbacks, simplified).
DIRECTIVE_OF = {"script": "script-src", "style": "style-src", "img": "img-src"}

pytestmark = pytest.mark.anyio


def directives(policy: str) -> dict[str, list[str]]:
    """A policy as {directive: its source list}."""
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def allows(policy: str, directive: str, url: str) -> bool:
    """Whether `policy` lets a page served by the gateway load `url` under `directive`."""
    parsed = directives(policy)
    sources = parsed.get(directive, parsed.get("default-src", []))
    parts = urlsplit(url)
    if not parts.scheme:
        return "'self'" in sources
    return f"{parts.scheme}:" in sources or f"{parts.scheme}://{parts.netloc}" in sources


class _Loads(HTMLParser):
    """Every script, stylesheet and icon a page loads, and whether it has inline script."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[tuple[str, str]] = []
        self.inline_script = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._in_script = not found.get("src")
            if found.get("src"):
                self.loads.append(("script", str(found["src"])))
        if tag == "link" and found.get("href"):
            kind = "style" if found.get("rel") == "stylesheet" else "img"
            self.loads.append((kind, str(found["href"])))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script = True


def assert_secured(response: httpx.Response, policy: str) -> None:
    for name, value in COMMON.items():
        assert response.headers[name] == value
    assert response.headers["content-security-policy"] == policy


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with API keys on and a 1,000-byte upload cap."""
    settings = fake_settings(write_model_files(tmp_path), api_keys=KEY, max_upload_bytes=1000)
    async with in_process(settings, FakeBackend()) as client:
        yield client


@pytest.mark.parametrize("path", ["/", "/health", "/health/live", "/models", "/metrics"])
async def test_json_answers_carry_the_headers_and_the_strict_policy(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert_secured(response, API_POLICY)
    assert directives(API_POLICY) == {"default-src": ["'none'"], "frame-ancestors": ["'none'"]}


async def test_problem_documents_carry_them_too(client: httpx.AsyncClient) -> None:
    not_found = await client.get("/nowhere")
    wrong_method = await client.delete("/predict")
    no_file = await client.post("/predict")
    not_an_image = await client.post("/predict", files={"file": ("a.txt", b"plain text")})
    statuses = [r.status_code for r in (not_found, wrong_method, no_file, not_an_image)]
    assert statuses[:2] == [404, 405]
    assert all(400 <= status < 500 for status in statuses)
    for response in (not_found, wrong_method, no_file, not_an_image):
        assert response.headers["content-type"] == "application/problem+json"
        assert_secured(response, API_POLICY)


async def test_answers_of_the_outer_middleware_carry_them(guarded: httpx.AsyncClient) -> None:
    unauthorized = await guarded.get("/metrics")
    too_large = await guarded.post(
        "/predict", files={"file": ("big.jpg", b"x" * 5000)}, headers={"X-API-Key": KEY}
    )
    assert (unauthorized.status_code, too_large.status_code) == (401, 413)
    assert_secured(unauthorized, API_POLICY)
    assert_secured(too_large, API_POLICY)


async def test_prometheus_text_and_the_redirect_get_the_strict_policy(
    client: httpx.AsyncClient,
) -> None:
    assert_secured(await client.get("/metrics/prometheus"), API_POLICY)
    redirect = await client.get("/", headers={"Accept": "text/html"})
    assert redirect.status_code == 307
    assert_secured(redirect, API_POLICY)


async def test_the_page_policy_allows_what_the_page_does_and_nothing_inline(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ui")
    assert_secured(response, PAGE_POLICY)
    policy = directives(PAGE_POLICY)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == policy["style-src"] == policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "blob:", "data:"]
    assert policy["frame-ancestors"] == policy["base-uri"] == policy["form-action"] == ["'none'"]
    assert not any("unsafe" in source for sources in policy.values() for source in sources)
    assert not allows(PAGE_POLICY, "script-src", "https://cdn.jsdelivr.net/x.js")


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_api_documentation_policy_allows_what_fastapi_loads(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert_secured(response, DOCS_POLICY)
    page = _Loads()
    page.feed(response.text)
    assert any(kind == "script" for kind, _ in page.loads)
    for kind, url in page.loads:
        assert allows(DOCS_POLICY, DIRECTIVE_OF[kind], url), (kind, url)
    # Swagger UI starts from an inline script FastAPI writes (ReDoc from a <redoc> element).
    if page.inline_script:
        assert "'unsafe-inline'" in directives(DOCS_POLICY)["script-src"]
    # The page reads the API document from the gateway, and is never framed.
    assert allows(DOCS_POLICY, "connect-src", "/openapi.json")
    assert directives(DOCS_POLICY)["frame-ancestors"] == ["'none'"]
    assert "'unsafe-eval'" not in DOCS_POLICY


async def test_swagger_ui_still_reads_the_api_document(client: httpx.AsyncClient) -> None:
    assert "url: '/openapi.json'" in (await client.get("/docs")).text
    document = await client.get("/openapi.json")
    assert document.status_code == 200
    assert "/predict" in document.json()["paths"]
    assert (await client.get("/docs/oauth2-redirect")).headers["content-security-policy"] == (
        DOCS_POLICY
    )


async def test_a_header_the_app_set_itself_is_kept() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"text/plain"),
            (b"content-security-policy", b"sandbox"),
            (b"x-frame-options", b"SAMEORIGIN"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    transport = httpx.ASGITransport(SecurityHeaders(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/anything")
    assert response.text == "onetwo"
    assert response.headers["content-security-policy"] == "sandbox"
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


async def test_the_500_starlette_sends_outside_the_middleware_carries_them(tmp_path: Path) -> None:
    backend = FakeBackend()
    app = create_app(fake_settings(write_model_files(tmp_path)), backend, backend.open_lane)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken-for-the-test", broken)
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        response = await client.get("/broken-for-the-test")
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert_secured(response, API_POLICY)
