"""`health`, `models` and `metrics`: one GET each, the document printed, the exit code decided.

`health` asks /health, the readiness endpoint, so its exit code answers "can
this gateway classify now?" (0 only for a 200), which scripts and CI steps can
wait on. A 2xx whose body is not the document asked for (another service on
the port, a proxy's page) is said in words and exits 1, never a traceback.
"""

import argparse
import asyncio
import json
import sys

from httpx import AsyncBaseTransport

from gateway.cli.client import Answer, GatewayClient
from gateway.cli.documents import models_outline, outline
from gateway.cli.render import problem_text
from gateway.cli.shapes import health_fault, metrics_fault, models_fault

# The gateway's paths (gateway/paths.py, not imported: it would pull in Starlette).
HEALTH = "/health"
MODELS = "/models"
METRICS = "/metrics"
METRICS_PROMETHEUS = "/metrics/prometheus"


def run_health(arguments: argparse.Namespace, transport: AsyncBaseTransport | None = None) -> int:
    """Print the readiness document; 0 only when the gateway answers 200 (healthy)."""
    answer = _get(arguments, HEALTH, transport).checked(health_fault)
    # A not-ready gateway answers 503 with the same document, saying why: print it too.
    if answer.error is None and answer.status in (200, 503) and health_fault(answer.body) is None:
        _print_document(arguments, answer, outline(answer.body))
        if answer.status != 200:
            print(f"{HEALTH}: {problem_text(answer)}", file=sys.stderr)
        return 0 if answer.status == 200 else 1
    print(f"{HEALTH}: {problem_text(answer)}", file=sys.stderr)
    return 1


def run_models(arguments: argparse.Namespace, transport: AsyncBaseTransport | None = None) -> int:
    """Print every model, version, state and label."""
    answer = _get(arguments, MODELS, transport).checked(models_fault)
    if not answer.ok:
        print(f"{MODELS}: {problem_text(answer)}", file=sys.stderr)
        return 1
    _print_document(arguments, answer, models_outline(answer.body))
    return 0


def run_metrics(arguments: argparse.Namespace, transport: AsyncBaseTransport | None = None) -> int:
    """Print the JSON metrics, or with --prometheus the text exposition."""
    path = METRICS_PROMETHEUS if arguments.prometheus else METRICS
    answer = _get(arguments, path, transport).checked(
        lambda body: metrics_fault(body, arguments.prometheus)
    )
    if not answer.ok:
        print(f"{path}: {problem_text(answer)}", file=sys.stderr)
        return 1
    if arguments.prometheus:
        sys.stdout.write(str(answer.body))
    else:
        print(json.dumps(answer.body, indent=None if arguments.json else 2))
    return 0


def _get(arguments: argparse.Namespace, path: str, transport: AsyncBaseTransport | None) -> Answer:
    async def fetch() -> Answer:
        async with GatewayClient(
            arguments.url, arguments.api_key, arguments.timeout, transport=transport
        ) as client:
            return await client.get(path)

    return asyncio.run(fetch())


def _print_document(arguments: argparse.Namespace, answer: Answer, lines: list[str]) -> None:
    print(json.dumps(answer.body) if arguments.json else "\n".join(lines))
