"""Run export_model.py as a user would: a fresh interpreter, the real command line."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "export_model.py"
# A random export, its TFLite copy and its checks take ~20 s on 2 busy cores.
EXPORT_TIMEOUT_S = 180


def run_cli(
    *args: str | Path,
    extra_env: dict[str, str] | None = None,
    hide: frozenset[str] = frozenset({"MODEL_SOURCE"}),
) -> subprocess.CompletedProcess[str]:
    """Run export_model.py with `args`; `hide` names variables the child must not inherit."""
    env = {k: v for k, v in os.environ.items() if k not in hide}
    env.update(extra_env or {})
    return subprocess.run(
        [sys.executable, str(CLI), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXPORT_TIMEOUT_S,
        check=False,
    )
