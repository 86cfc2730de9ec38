"""How the gateway's documents (/health, /models) read on a terminal.

Indented `key: value` lines, the shape YAML gives, without a YAML dependency:
the JSON stays one `--json` away for programs. Fields of the wrong type are read as absent
(gateway/cli/shapes.py), so an odd document still prints.
"""

import json
from typing import Any

from gateway.cli.shapes import as_object, objects_in


def outline(document: Any, indent: int = 0) -> list[str]:
    """A JSON document as indented `key: value` lines; lists of objects as `-` items."""
    pad = " " * indent
    if not isinstance(document, dict):
        return [f"{pad}{_scalar(document)}"]
    lines: list[str] = []
    for key, value in document.items():
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.extend(outline(value, indent + 2))
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            lines.append(f"{pad}{key}:")
            for item in value:
                # An empty object outlines to no line at all: show it as {}.
                nested = outline(item, indent + 4) or ["{}"]
                lines.append(f"{pad}  - {nested[0].lstrip()}")
                lines.extend(nested[1:])
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def models_outline(document: Any) -> list[str]:
    """GET /models as one line per model and one per version: state, labels, weights."""
    document = as_object(document)
    lines = [f"default model: {document.get('default_model', '?')}"]
    if document.get("config_error"):
        lines.append(f"config error: {document['config_error']}")
    for model in objects_in(document.get("models")):
        default = " (default)" if model.get("default") else ""
        labels = ", ".join(
            f"{name}={version}" for name, version in as_object(model.get("labels")).items()
        )
        lines.append(
            f"{model.get('name', '?')}{default}: {model.get('version_policy', '')}"
            + (f"; labels {labels}" if labels else "")
        )
        if model.get("error"):
            lines.append(f"  error: {model['error']}")
        for version in objects_in(model.get("versions")):
            named = _scalar(version.get("labels")) if version.get("labels") else "-"
            source = version.get("weights_source") or "?"
            lines.append(
                f"  version {version.get('version', '?')}  {version.get('state', '?')}  "
                f"labels: {named}  weights: {version.get('weights', '?')} ({source})"
            )
            if version.get("error"):
                lines.append(f"    error: {version['error']}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ", ".join(_scalar(item) for item in value) or "[]"
    return json.dumps(value)
