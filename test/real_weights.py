"""Session fixtures holding a model version with real ImageNet weights (a conftest plugin).

`efficientnet_model_dir` is the one to use: a model folder holding version 1 of
EfficientNet-Lite0 with Google's ImageNet weights, exported once per test session by
`export_model.py --source efficientnet-lite0 --quantize int8` (no network: the weights come from a
pinned package in requirements-export.txt). The first test that asks for it pays for
the export (about 20 s on 2 cores); every later one gets the same folder. The exporter
has already checked the version before the fixture returns it: the contract's
signature, the TFLite copy against the SavedModel, and the top-1 on the reference
photos (modelexport/photos/: chelsea.png is 286 "Egyptian cat" at about 0.79,
coffee.png 968 "espresso" at about 0.90).

    <session tmp>/real-weights0/efficientnet_lite0/     <- the fixture's value
        1/saved_model.pb, variables/
        1/assets.extra/labels.txt, export_info.json, model.tflite, tf_serving_warmup_requests
        1/assets.extra/model_int8.tflite, golden_answer_int8.json  <- the int8 copy

To serve it, point a gateway or the TF Serving double at it:
MODEL_BASE_PATH=str(folder.parent), MODEL_NAME=folder.name (that is,
"efficientnet_lite0"). Treat the folder as read-only, since the whole session shares
it; a test that needs another version should export into its own tmp_path.
`efficientnet_export` gives the same folder with the exporter's printed report.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from export_cli import run_cli

MODEL_NAME = "efficientnet_lite0"
VERSION_FILES = (
    "saved_model.pb",
    "assets.extra/labels.txt",
    "assets.extra/export_info.json",
    "assets.extra/model.tflite",
    "assets.extra/model_int8.tflite",
    "assets.extra/tf_serving_warmup_requests",
)


@dataclass(frozen=True)
class RealWeightsExport:
    """The exported model folder, what the exporter printed, and how long it took."""

    model_dir: Path
    stdout: str
    seconds: float


@pytest.fixture(scope="session")
def efficientnet_export(tmp_path_factory: pytest.TempPathFactory) -> RealWeightsExport:
    """Run `export_model.py --source efficientnet-lite0 --quantize int8` once, for the session."""
    base = tmp_path_factory.mktemp("real-weights")
    started = time.monotonic()
    # No --model-name: the source's default folder is part of what is being relied on.
    # With the int8 copy, so one export serves the int8 tests too (about 15 s more).
    done = run_cli("--source", "efficientnet-lite0", "--quantize", "int8", "--model-dir", base)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        pytest.fail(
            f"export_model.py --source efficientnet-lite0 exited {done.returncode}:\n"
            f"{done.stderr[-4000:]}",
            pytrace=False,
        )
    model_dir = base / MODEL_NAME
    missing = [name for name in VERSION_FILES if not (model_dir / "1" / name).is_file()]
    if missing:
        pytest.fail(f"the export left {model_dir}/1 without {missing}", pytrace=False)
    return RealWeightsExport(model_dir, done.stdout, seconds)


@pytest.fixture(scope="session")
def efficientnet_model_dir(efficientnet_export: RealWeightsExport) -> Path:
    """The `efficientnet_lite0` model folder holding version 1 (real ImageNet weights)."""
    return efficientnet_export.model_dir
