"""Security headers on every answer: no sniffing, no referrer, no framing, and a CSP per kind.

A pure ASGI middleware, not Starlette's BaseHTTPMiddleware: it only adds headers
to the `http.response.start` message, so a streamed body, a disconnect or the
upload guard's own answer pass through untouched, in the request's own task.
Headers a route set itself are kept (setdefault).

Three Content-Security-Policies, chosen by path:

- The demo page and its assets (`paths.is_demo_page`): only the gateway's own script
  and style, no inline code and no eval; images also from `blob:` (each photo's
  preview is an object URL) and `data:` (the page's empty icon); `fetch` only to
  the gateway itself (POST /predict). The page was written to fit it: no inline
  script, no style attribute (bar widths are set through the CSSOM, which CSP
  allows).
- FastAPI's API documentation (`/docs`, its OAuth2 return page, `/redoc`): Swagger
  UI and ReDoc load their bundles from cdn.jsdelivr.net and start from an inline
  script FastAPI writes (fastapi/openapi/docs.py); Swagger UI sets inline styles,
  ReDoc injects <style> tags, loads Google Fonts and runs its search in a `blob:`
  worker. A hash of the inline script would break with any FastAPI upgrade, so
  these pages, which show only the public API description, get a policy of their
  own that names those sources and allows inline script and style there only.
- Everything else (JSON answers, problem documents, Prometheus text, redirects):
  `default-src 'none'`: an answer opened in a browser can load and run nothing.

Every policy says `frame-ancestors 'none'` (with X-Frame-Options: DENY for older
browsers): no page of the gateway may be framed, so none can be clickjacked.
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import paths

PAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ]
)
_CDN = "https://cdn.jsdelivr.net"
DOCS_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'self' 'unsafe-inline' {_CDN}",
        f"style-src 'self' 'unsafe-inline' {_CDN} https://fonts.googleapis.com",
        "font-src 'self' https://fonts.gstatic.com",
        # The favicons FastAPI links (fastapi.tiangolo.com), Swagger's validator badge.
        "img-src 'self' data: https:",
        # Swagger UI reads /openapi.json and sends "Try it out" requests to the gateway.
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
DOCS_PATHS = frozenset({paths.DOCS, paths.DOCS_OAUTH2_REDIRECT, paths.REDOC})
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


# What an API answer carries, for the one answer sent outside this middleware:
# Starlette's 500 (gateway/problems.py).
API_HEADERS = {**COMMON_HEADERS, "Content-Security-Policy": API_POLICY}


def policy_for(path: str) -> str:
    """The Content-Security-Policy of the answer to a request for `path`."""
    if paths.is_demo_page(path):
        return PAGE_POLICY
    if path in DOCS_PATHS:
        return DOCS_POLICY
    return API_POLICY


class SecurityHeaders:
    """Add the common headers and the path's CSP to every HTTP answer that lacks them."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = _adding_headers(send, policy_for(scope["path"]))
        await self.app(scope, receive, send)


def _adding_headers(send: Send, policy: str) -> Send:
    """`send`, adding the headers to the response's start message."""
    added = {**COMMON_HEADERS, "Content-Security-Policy": policy}

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in added.items():
                headers.setdefault(name, value)
        await send(message)

    return send_with_headers
