"""The demo page (GET /ui) and GET /'s content negotiation: the real app in-process.

What a browser does with the page (uploads, bars, CSP violations) is checked in
test/e2e/test_demo_page_browser.py.
"""

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from api_client import in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.security_headers import PAGE_POLICY
from gateway.ui_route import UI_DIR, prefers_html

# What Chromium 13x sends when the user opens a URL (a navigation).
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
KEY = "key-demo-5a1f93c2"
ASSETS = [
    ("/ui", "index.html", "text/html; charset=utf-8"),
    ("/ui/demo.js", "demo.js", "text/javascript; charset=utf-8"),
    ("/ui/demo.css", "demo.css", "text/css; charset=utf-8"),
]

pytestmark = pytest.mark.anyio


class _PageParts(HTMLParser):
    """What of the page a Content-Security-Policy governs: scripts, styles, handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.script_sources: list[str | None] = []
        self.stylesheets: list[str | None] = []
        self.style_elements = 0
        self.inline_attributes: list[str] = []
        self.labelled: set[str] = set()
        self.inputs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self.script_sources.append(found.get("src"))
        if tag == "link" and found.get("rel") == "stylesheet":
            self.stylesheets.append(found.get("href"))
        if tag == "style":
            self.style_elements += 1
        if tag == "label" and found.get("for"):
            self.labelled.add(str(found["for"]))
        if tag == "input":
            self.inputs.append(str(found.get("id")))
        self.inline_attributes += [
            name for name, _ in attrs if name == "style" or name.startswith("on")
        ]


async def get_without_accept(client: httpx.AsyncClient, path: str) -> httpx.Response:
    """httpx sends `Accept: */*` unless the header is taken off the request."""
    request = client.build_request("GET", path)
    del request.headers["accept"]
    return await client.send(request)


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with API keys on."""
    settings = fake_settings(write_model_files(tmp_path), api_keys=KEY)
    async with in_process(settings, FakeBackend()) as client:
        yield client


@pytest.mark.parametrize(("path", "name", "media_type"), ASSETS)
async def test_the_page_and_its_assets_are_served_as_written(
    client: httpx.AsyncClient, path: str, name: str, media_type: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (UI_DIR / name).read_bytes()
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["content-security-policy"] == PAGE_POLICY
    # `curl -I` and uptime probes ask with HEAD.
    head = await client.head(path)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == media_type


async def test_the_page_loads_only_its_own_script_and_style(client: httpx.AsyncClient) -> None:
    parts = _PageParts()
    parts.feed((await client.get("/ui")).text)
    assert parts.script_sources == ["/ui/demo.js"]
    assert parts.stylesheets == ["/ui/demo.css"]
    # What PAGE_POLICY would refuse: inline <style>, style="...", onclick="...".
    assert parts.style_elements == 0
    assert parts.inline_attributes == []
    assert "'unsafe-inline'" not in PAGE_POLICY
    assert "'unsafe-eval'" not in PAGE_POLICY


async def test_every_input_on_the_page_has_a_label(client: httpx.AsyncClient) -> None:
    parts = _PageParts()
    parts.feed((await client.get("/ui")).text)
    assert parts.inputs == ["api-key", "photos"]
    assert set(parts.inputs) <= parts.labelled


def test_the_script_keeps_the_key_in_session_storage_and_writes_no_html() -> None:
    script = (UI_DIR / "demo.js").read_text()
    assert "sessionStorage" in script
    for forbidden in ("localStorage", "document.cookie", "innerHTML", "eval(", "new Function"):
        assert forbidden not in script
    assert '"X-API-Key"' in script


@pytest.mark.parametrize("name", ["index.html", "demo.js", "demo.css"])
def test_each_asset_opens_with_a_comment_saying_what_it_is(name: str) -> None:
    text = (UI_DIR / name).read_text()
    opening = {"index.html": "<!doctype html>\n<!--", "demo.js": "//", "demo.css": "/*"}[name]
    assert text.startswith(opening)


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, FIREFOX_ACCEPT, "text/html"])
async def test_a_browser_asking_for_the_root_is_sent_to_the_page(
    client: httpx.AsyncClient, accept: str
) -> None:
    response = await client.get("/", headers={"Accept": accept})
    assert response.status_code == 307
    assert response.headers["location"] == "/ui"
    assert response.headers["vary"] == "Accept"


@pytest.mark.parametrize(
    "accept",
    ["*/*", "application/json", "text/*", "text/html;q=0.5, application/json", "image/png"],
)
async def test_everything_else_gets_the_json_index_unchanged(
    client: httpx.AsyncClient, accept: str
) -> None:
    plain = await get_without_accept(client, "/")
    response = await client.get("/", headers={"Accept": accept})
    assert plain.status_code == response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == plain.json()
    body = plain.json()
    # The original contract's GET / fields (test/contract/original.json).
    assert {"service", "model", "version", "endpoints", "usage"} <= set(body)
    assert body["service"] == "ml-inference-gateway"
    assert body["endpoints"]["GET /ui"].startswith("demo page")
    assert response.headers["vary"] == "Accept"


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        (BROWSER_ACCEPT, True),
        ("TEXT/HTML", True),
        ("application/json, text/html", False),  # a tie goes to JSON
        ("text/html;q=0.9, application/*;q=0.8", True),
        ("text/html;q=0.8, */*;q=0.9", False),
        ("text/html;q=oops", False),
        ("text/html;q=0, */*", False),
        ("application/json;q=0.1, text/html;q=0.2, */*;q=1", True),  # most specific wins
        ("", False),
        ("*/*", False),
    ],
)
def test_prefers_html_ranks_html_against_json(accept: str, page: bool) -> None:
    assert prefers_html(accept) is page


async def test_with_api_keys_on_the_page_loads_without_a_key(guarded: httpx.AsyncClient) -> None:
    answers = {path: await guarded.get(path) for path, _, _ in ASSETS}
    assert {path: (r.status_code, r.headers["content-type"]) for path, r in answers.items()} == {
        path: (200, media_type) for path, _, media_type in ASSETS
    }


async def test_with_api_keys_on_a_browser_reaches_the_page_and_predict_still_needs_the_key(
    guarded: httpx.AsyncClient,
) -> None:
    redirect = await guarded.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert (redirect.status_code, redirect.headers["location"]) == (307, "/ui")
    refused = await guarded.post("/predict", files={"file": ("cat.jpg", b"not read")})
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    # A path under /ui that is not one of the page's files is not opened by the prefix.
    assert (await guarded.get("/ui/other.js")).status_code == 401
