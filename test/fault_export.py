"""A version exported with `--fault broken-preprocessing`: the session's one broken export.

Its serving graph reads RGB as BGR while its golden answer is the correct model's
(modelexport/faults.py), so everything that checks answers should catch it.
"""

from dataclasses import dataclass
from pathlib import Path

import pytest

from export_cli import run_cli


@dataclass(frozen=True)
class FaultExport:
    """The broken version's folder and what the exporter printed."""

    version: Path
    stdout: str


@pytest.fixture(scope="session")
def fault_export(tmp_path_factory: pytest.TempPathFactory) -> FaultExport:
    """The session model's twin (same seed) exported with --fault broken-preprocessing."""
    models = tmp_path_factory.mktemp("fault")
    done = run_cli(
        *("--source", "random", "--fault", "broken-preprocessing", "--model-dir", models)
    )
    assert done.returncode == 0, done.stderr
    return FaultExport(models / "mobilenet" / "1", done.stdout)
