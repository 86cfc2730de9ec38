"""GET /ui and its two assets: the demo page, served as the files under gateway/ui/.

The page holds no data: everything it shows comes from POST /predict, which the
browser calls with the user's key. So the page and its assets stay open when API
keys are on (gateway/admission.py), as GET / is. No build step and no CDN: the
files are sent as written. `Cache-Control: no-cache` makes a browser revalidate
(FileResponse sends an ETag), so an upgraded gateway never pairs its new page
with a cached old script.

`prefers_html` is how GET / tells a browser's navigation from an API client.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from gateway import paths

UI_DIR = Path(__file__).resolve().parent / "ui"
# path -> (file under UI_DIR, media type; Starlette adds "; charset=utf-8" to text/*).
ASSETS = {
    paths.UI: ("index.html", "text/html"),
    paths.UI_SCRIPT: ("demo.js", "text/javascript"),
    paths.UI_STYLE: ("demo.css", "text/css"),
}

# Not part of the API: the OpenAPI document describes what clients call.
router = APIRouter(include_in_schema=False)


def _file_route(name: str, media_type: str) -> Callable[[], Awaitable[Response]]:
    """A handler sending one file of the page."""

    async def serve() -> Response:
        return FileResponse(
            UI_DIR / name, media_type=media_type, headers={"Cache-Control": "no-cache"}
        )

    return serve


for _path, (_name, _media_type) in ASSETS.items():
    # HEAD too: `curl -I` and uptime probes check a page that way.
    router.add_api_route(_path, _file_route(_name, _media_type), methods=["GET", "HEAD"])


def prefers_html(accept: str) -> bool:
    """Whether an Accept header ranks text/html above JSON, as a browser's navigation does.

    Only a text/html the client names counts: `*/*` (curl's) and `text/*` accept
    anything, and GET / keeps answering JSON to them. JSON's weight is the most
    specific of application/json, application/* and */* (RFC 9110 §12.5.1), and a
    tie goes to JSON: the index's JSON is the original contract.
    """
    weights: dict[str, float] = {}
    for part in accept.split(","):
        media_range, *params = (piece.strip() for piece in part.split(";"))
        weights[media_range.lower()] = _quality(params)
    html = weights.get("text/html", 0.0)
    for json_range in ("application/json", "application/*", "*/*"):
        if json_range in weights:
            return html > weights[json_range]
    return html > 0.0


def _quality(params: list[str]) -> float:
    """The q parameter of one media range: 1 when absent, 0 when it does not parse."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(1.0, max(0.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0
