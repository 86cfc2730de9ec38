"""What the gateway's documents must look like, checked before anything is printed.

A 2xx status is not enough: a proxy, another service on the port, or a gateway
of another version can answer 200 with anything. Each `*_fault` function
returns a few words saying what is wrong with a document (None when it is
fine), so the CLI reports "unexpected answer from the gateway: ..." for that
one request and goes on. The accessors below let the renderers read any JSON
without failing on a field of the wrong type.
"""

import json
import math
from typing import Any

# How much of a text body a fault quotes: enough to recognise an HTML page.
QUOTED_CHARACTERS = 60


def describe(value: Any) -> str:
    """A few words naming a JSON value: `a JSON list`, `text "<html>"`, `an empty body`."""
    if isinstance(value, str):
        if not value.strip():
            return "an empty body"
        return f"text {json.dumps(value.strip().splitlines()[0][:QUOTED_CHARACTERS])}"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON list"
    return f"the JSON value {json.dumps(value)}"


def prediction_fault(body: Any) -> str | None:
    """What keeps a 2xx body from being a /predict answer (gateway/predict_route.py)."""
    if not isinstance(body, dict):
        return f"{describe(body)}, not a JSON object"
    if "success" not in body:
        return 'no "success" field'
    if body["success"] is not True:
        return f'"success" is {json.dumps(body["success"])[:QUOTED_CHARACTERS]}'
    predictions = body.get("predictions")
    fault = _objects_fault(predictions, "predictions", "prediction")
    if fault is not None:
        return fault
    for index, prediction in enumerate(objects_in(predictions), start=1):
        if as_number(prediction.get("probability")) is None:
            return f'prediction {index} has no numeric "probability"'
    return None


def health_fault(body: Any) -> str | None:
    """What keeps a body from being the /health document (a JSON object with a `status`)."""
    if not isinstance(body, dict):
        return f"{describe(body)}, not a JSON object"
    return None if "status" in body else 'no "status" field'


def models_fault(body: Any) -> str | None:
    """What keeps a body from being the /models document (a list of model objects)."""
    if not isinstance(body, dict):
        return f"{describe(body)}, not a JSON object"
    return _objects_fault(body.get("models"), "models", "model")


def metrics_fault(body: Any, prometheus: bool) -> str | None:
    """What keeps a body from being /metrics (a JSON object) or the Prometheus text page."""
    if prometheus:
        return None if isinstance(body, str) else f"{describe(body)}, not the Prometheus text page"
    return None if isinstance(body, dict) else f"{describe(body)}, not a JSON object"


def _objects_fault(value: Any, field: str, item: str) -> str | None:
    """What keeps a document's `field` from being a list of JSON objects."""
    if not isinstance(value, list):
        return f'no "{field}" list'
    for index, element in enumerate(value, start=1):
        if not isinstance(element, dict):
            return f"{item} {index} is {describe(element)}, not an object"
    return None


def as_object(value: Any) -> dict[str, Any]:
    """The value if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def objects_in(value: Any) -> list[dict[str, Any]]:
    """The JSON objects a list holds (nothing if the value is not a list)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def as_number(value: Any) -> float | None:
    """A finite JSON number as a float; None for anything else (booleans and strings too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float: no probability
        return None
    return number if math.isfinite(number) else None
