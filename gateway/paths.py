"""Every path the gateway answers on, named once.

The routes are declared on these, the middleware matches requests against
them and `GET /` lists them, so a path cannot change in one place only.
"""

from starlette.types import Scope

INDEX = "/"
HEALTH = "/health"
HEALTH_READY = "/health/ready"
HEALTH_LIVE = "/health/live"
PREDICT = "/predict"
PREDICT_BATCH = "/predict/batch"
METRICS = "/metrics"
METRICS_PROMETHEUS = "/metrics/prometheus"
MODEL = "/model"
MODELS = "/models"
ADMIN_ROUTING = "/admin/routing"
DOCS = "/docs"
# FastAPI serves these beside DOCS (the Swagger UI's OAuth2 return page, then ReDoc).
DOCS_OAUTH2_REDIRECT = "/docs/oauth2-redirect"
REDOC = "/redoc"
# The demo page and its two assets (gateway/ui_route.py): static, no data, no key needed.
UI = "/ui"
UI_SCRIPT = "/ui/demo.js"
UI_STYLE = "/ui/demo.css"


_PREDICTION_PATHS = frozenset({PREDICT, PREDICT_BATCH})


def is_prediction(scope: Scope) -> bool:
    """Whether an ASGI request is a POST /predict or /predict/batch: the requests the
    gateway admits, bounds, drains and counts (a batch is one request, its images are
    counted apart: gateway_batch_images_total)."""
    prediction: bool = (
        scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in _PREDICTION_PATHS
    )
    return prediction


def is_demo_page(path: str) -> bool:
    """Whether `path` is the demo page or one of its assets: static files that hold no data."""
    return path in (UI, UI_SCRIPT, UI_STYLE)
