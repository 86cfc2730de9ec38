"""Marks every test by the layer its folder belongs to, so `-m` can pick layers.

test/unit runs the code in-process; test/deploy checks files with the tools
that read them (hadolint, kubectl, uv, a stand-in HTTP server); test/e2e and the
TF Serving double's own tests (tfserving_double/tests) start the gateway, the
double or export_model.py as real processes and talk to them over sockets;
test/stack talks only HTTP to a whole stack (started here, or named by
STACK_GATEWAY_URL as the stack workflow does).
"""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
LAYERS = {
    ROOT / "test" / "unit": "unit",
    ROOT / "test" / "e2e": "e2e",
    ROOT / "test" / "deploy": "deploy",
    # Black-box HTTP against a running stack: STACK_GATEWAY_URL's, or one it starts here.
    ROOT / "test" / "stack": "e2e",
    ROOT / "tfserving_double" / "tests": "e2e",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for folder, marker in LAYERS.items():
            if item.path.is_relative_to(folder):
                item.add_marker(marker)
