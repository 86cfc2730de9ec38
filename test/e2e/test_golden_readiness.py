"""Readiness replays each served version's golden answer and fails, saying why, on a wrong one.

Version 1 is the session's correct export; version 2 is the same weights exported
with `--fault broken-preprocessing` (test/fault_export.py): it loads, it answers,
only its answers are wrong. Served side by side from a model config file, in
process and through the TF Serving double, readiness must name version 2.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fault_export import FaultExport
from processes import Process, answers, gateway, tfserving_double, wait_until


def config_text(model_dir: Path) -> str:
    return f"""
model_config_list {{
  config {{
    name: "mobilenet"
    base_path: "{model_dir}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
  }}
}}
"""


@pytest.fixture(scope="module")
def two_versions(
    model_root: Path, fault_export: FaultExport, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A model folder holding the good version 1 and the broken version 2, and a config file."""
    root = tmp_path_factory.mktemp("golden-readiness")
    model_dir = root / "models" / "mobilenet"
    shutil.copytree(model_root / "mobilenet" / "1", model_dir / "1")
    shutil.copytree(fault_export.version, model_dir / "2")
    config = root / "models.config"
    config.write_text(config_text(model_dir))
    return model_dir, config


@pytest.fixture(scope="module", params=["embedded", "tfserving"])
def front(
    request: pytest.FixtureRequest, two_versions: tuple[Path, Path], logs: Path
) -> Iterator[Process]:
    model_dir, config = two_versions
    env = {
        "MODEL_BASE_PATH": str(model_dir.parent),
        "MODEL_CONFIG_FILE": str(config),
        "STATUS_POLL_SECONDS": "0.2",
        "MODEL_CONFIG_POLL_SECONDS": "0.2",
    }
    double = None
    if request.param == "tfserving":
        double = tfserving_double(
            model_dir, logs / "double-golden.log", model_config_file=str(config)
        ).start()
        env |= {
            "INFERENCE_BACKEND": "tfserving",
            "TF_SERVING_URL": f"{double.url}/v1/models/mobilenet:predict",
            "TF_SERVING_GRPC_TARGET": double.grpc_target,
        }
    else:
        env["INFERENCE_BACKEND"] = "embedded"
    process = gateway(logs / f"gateway-golden-{request.param}.log", **env)
    process.ready = answers(f"{process.url}/health/live", 200)
    process.start()
    yield process
    process.stop()
    if double is not None:
        double.stop()


def checked(url: str) -> dict[int, dict[str, object]]:
    body = httpx.get(f"{url}/health", timeout=30).json()
    return {check["version"]: check for check in body.get("golden_checks", [])}


def test_readiness_fails_naming_the_version_that_answers_wrongly(front: Process) -> None:
    wait_until(lambda: len(checked(front.url)) == 2, timeout=60, what="both versions checked")
    response = httpx.get(f"{front.url}/health", timeout=30)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert "mobilenet version 2 fails its golden check" in body["error"]
    checks = checked(front.url)
    assert checks[1]["passed"] is True
    assert checks[2]["passed"] is False
    assert "L1" in str(checks[2]["detail"]) or "class" in str(checks[2]["detail"])
    # Version 2 still answers when asked for; only readiness says it is wrong.
    metrics = httpx.get(f"{front.url}/metrics/prometheus").text
    assert 'gateway_golden_check_passed{model="mobilenet",version="1"} 1.0' in metrics
    assert 'gateway_golden_check_passed{model="mobilenet",version="2"} 0.0' in metrics
