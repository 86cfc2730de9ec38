"""How the gateway's documents (/health, /models) read on a terminal.

Indented `key: value` lines, the shape YAML gives, without a YAML dependency:
the JSON stays one `--json` away for programs.
"""

import json
from typing import Any


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
                nested = outline(item, indent + 4)
                lines.append(f"{pad}  - {nested[0].lstrip()}")
                lines.extend(nested[1:])
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def models_outline(document: dict[str, Any]) -> list[str]:
    """GET /models as one line per model and one per version: state, labels, weights."""
    lines = [f"default model: {document.get('default_model', '?')}"]
    if document.get("config_error"):
        lines.append(f"config error: {document['config_error']}")
    for model in document.get("models", []):
        default = " (default)" if model.get("default") else ""
        labels = ", ".join(f"{name}={version}" for name, version in model.get("labels", {}).items())
        lines.append(
            f"{model.get('name', '?')}{default}: {model.get('version_policy', '')}"
            + (f"; labels {labels}" if labels else "")
        )
        if model.get("error"):
            lines.append(f"  error: {model['error']}")
        for version in model.get("versions", []):
            named = ", ".join(version.get("labels", [])) or "-"
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
