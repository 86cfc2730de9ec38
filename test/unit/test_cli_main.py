"""gateway/cli/__main__.py: Ctrl-C at any moment ends the run with "interrupted" and exit 130.

The interrupt is a real SIGINT, raised by the process at the moment the
command modules are imported (an import hook presses Ctrl-C there), in a
fresh interpreter so the import really happens.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CTRL_C_DURING_IMPORT = """
import importlib.abc, signal, sys

class PressCtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1]:
            signal.raise_signal(signal.SIGINT)
        return None

sys.meta_path.insert(0, PressCtrlC())
from gateway.cli.__main__ import main
sys.exit(main(["health", "--url", "http://127.0.0.1:9"]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT as POSIX delivers it")
@pytest.mark.parametrize("module", ["gateway.cli.arguments", "gateway.cli.commands"])
def test_ctrl_c_while_the_modules_load_exits_130_without_a_traceback(module: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", CTRL_C_DURING_IMPORT, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stderr) == (130, "interrupted\n")
