"""How /predict answers are printed: a table per image for people, JSON Lines for programs.

Problems are worded from the gateway's own problem document (RFC 9457: `title`
and `detail`, gateway/problems.py), so the CLI says what the API says and adds
no second wording of the same error.
"""

import json
from pathlib import Path
from typing import Any

from gateway.cli.client import Answer


def json_line(file: Path, answer: Answer) -> str:
    """One JSON Lines record: the file, whether it succeeded, and the gateway's answer."""
    record: dict[str, Any] = {
        "file": str(file),
        "ok": answer.ok,
        "status": answer.status,
        "response": answer.body,
    }
    if answer.error is not None:
        record["error"] = answer.error
    return json.dumps(record, ensure_ascii=False)


def problem_text(answer: Answer) -> str:
    """`STATUS title: detail` from a problem document, or what went wrong without one."""
    if answer.error is not None:
        return answer.error
    body = answer.body
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        title = body.get("title") or ""
        detail = body.get("detail") or body.get("error") or ""
        return f"{answer.status} {title}: {detail}" if title else f"{answer.status} {detail}"
    if isinstance(body, dict) and "error" in body:
        return f"{answer.status} {body['error']}"
    text = body if isinstance(body, str) else json.dumps(body)
    first_line = text.strip().splitlines()[0] if text.strip() else "(empty body)"
    return f"{answer.status} {first_line[:200]}"


def failure_line(file: Path, answer: Answer) -> str:
    """`FILE: STATUS title: detail`, the line a failed file gets on stderr."""
    return f"{file}: {problem_text(answer)}"


def prediction_table(file: Path, body: dict[str, Any]) -> str:
    """The file's name, its ranked classes, and which model answered in how long."""
    predictions: list[dict[str, Any]] = body.get("predictions") or []
    width = max((len(str(p.get("label", ""))) for p in predictions), default=0)
    lines = [str(file)]
    for rank, prediction in enumerate(predictions, start=1):
        percent = float(prediction.get("probability", 0.0)) * 100.0
        label = str(prediction.get("label", ""))
        lines.append(
            f"  {rank:>4}  {prediction.get('class_id', ''):>5}  {label:<{width}}  {percent:6.2f}%"
        )
    lines.append(f"  {model_summary(body)}, {body.get('total_time_ms', '?')} ms")
    return "\n".join(lines)


def model_summary(body: dict[str, Any]) -> str:
    """`model mobilenet version 1 (tfserving)`, from an answer's `model` object."""
    model = body.get("model") or {}
    label = f" [{model['label']}]" if model.get("label") else ""
    return (
        f"model {model.get('name', '?')} version {model.get('version', '?')}{label} "
        f"({model.get('backend', '?')})"
    )


def untrained_warning(body: dict[str, Any]) -> str | None:
    """The warning line for an answer from untrained weights, None for real ones."""
    model = body.get("model") or {}
    if model.get("weights") != "untrained":
        return None
    return f"warning: {model_summary(body)} has UNTRAINED weights: its classes mean nothing."
