"""How /predict answers are printed: a table per image for people, JSON Lines for programs.

Problems are worded from the gateway's own problem document (RFC 9457: `title`
and `detail`, gateway/problems.py), so the CLI says what the API says and adds
no second wording of the same error. The renderers read any JSON: a field of
the wrong type prints as "?" rather than failing (gateway/cli/shapes.py).
"""

import json
from pathlib import Path
from typing import Any

from gateway.cli.client import Answer
from gateway.cli.shapes import as_number, as_object, objects_in


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
        # With a status, the gateway answered, but not with what was asked for.
        return answer.error if answer.status is None else f"{answer.status} {answer.error}"
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


def prediction_table(file: Path, body: Any) -> str:
    """The file's name, its ranked classes, and which model answered in how long."""
    predictions = objects_in(as_object(body).get("predictions"))
    width = max((len(str(p.get("label", ""))) for p in predictions), default=0)
    lines = [str(file)]
    for rank, prediction in enumerate(predictions, start=1):
        probability = as_number(prediction.get("probability"))
        percent = "      ?" if probability is None else f"{probability * 100.0:6.2f}%"
        label = str(prediction.get("label", ""))
        class_id = str(prediction.get("class_id", ""))
        lines.append(f"  {rank:>4}  {class_id:>5}  {label:<{width}}  {percent}")
    total = as_object(body).get("total_time_ms", "?")
    lines.append(f"  {model_summary(body)}, {total} ms")
    return "\n".join(lines)


def model_summary(body: Any) -> str:
    """`model mobilenet version 1 (tfserving)`, from an answer's `model` object; an answer
    in another precision than float32 says so: `(embedded, int8)`."""
    model = as_object(as_object(body).get("model"))
    label = f" [{model['label']}]" if model.get("label") else ""
    # float32 is every backend's default; int8 answers differ a little, so they stand out.
    precision = model.get("precision", "float32")
    backend = str(model.get("backend", "?"))
    runs_on = backend if precision == "float32" else f"{backend}, {precision}"
    return f"model {model.get('name', '?')} version {model.get('version', '?')}{label} ({runs_on})"


def untrained_warning(body: Any) -> str | None:
    """The warning line for an answer from untrained weights, None for real ones."""
    model = as_object(as_object(body).get("model"))
    if model.get("weights") != "untrained":
        return None
    return f"warning: {model_summary(body)} has UNTRAINED weights: its classes mean nothing."
