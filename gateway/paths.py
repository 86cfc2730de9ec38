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
METRICS = "/metrics"
METRICS_PROMETHEUS = "/metrics/prometheus"
MODEL = "/model"
MODELS = "/models"
ADMIN_ROUTING = "/admin/routing"
DOCS = "/docs"


def is_prediction(scope: Scope) -> bool:
    """Whether an ASGI request is a POST /predict, the request the gateway bounds and counts."""
    prediction: bool = (
        scope["type"] == "http" and scope["path"] == PREDICT and scope["method"] == "POST"
    )
    return prediction
