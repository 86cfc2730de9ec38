"""A running gateway serves the OpenAPI document that test/unit/test_app_schema.py fuzzes.

schemathesis drives the app in-process there, with a fake backend; this ties
that document to the one a gateway in TF Serving mode serves over HTTP, so the
in-process run tests what clients see.
"""

from pathlib import Path

import httpx

from fake_backend import FakeBackend, fake_settings
from gateway.app import create_app
from processes import Process


def test_the_running_gateway_serves_the_document_tested_in_process(
    tfserving_gateway: Process, tmp_path: Path
) -> None:
    served = httpx.get(f"{tfserving_gateway.url}/openapi.json", timeout=30).json()
    assert served == create_app(fake_settings(tmp_path), FakeBackend()).openapi()
    assert "/predict" in served["paths"]
