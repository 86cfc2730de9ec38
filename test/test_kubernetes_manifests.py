"""deploy/kubernetes agrees with compose and the gateway image: same pins, probes, identity."""

import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
KUBE = ROOT / "deploy" / "kubernetes"


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def container(kind_name: str) -> dict[str, Any]:
    (deployment,) = [
        doc
        for doc in load_all(KUBE / f"{kind_name}.yaml")
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == kind_name
    ]
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text()))


def test_images_match_the_compose_pins(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert container("tensorflow-serving")["image"] == services["tensorflow-serving"]["image"]
    assert container("gateway")["image"] == services["gateway"]["image"]


def test_gateway_probes_split_liveness_from_readiness() -> None:
    gateway = container("gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_tf_serving_readiness_is_the_compose_healthcheck(compose: dict[str, Any]) -> None:
    compose_check = compose["services"]["tensorflow-serving"]["healthcheck"]["test"][-1]
    kube_check = container("tensorflow-serving")["readinessProbe"]["exec"]["command"][-1]
    assert kube_check == compose_check.replace("$$", "$")
    assert "AVAILABLE" in kube_check


def test_gateway_runs_as_the_image_user_on_a_read_only_root() -> None:
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    (uid,) = re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)
    (deployment,) = [d for d in load_all(KUBE / "gateway.yaml") if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert str(pod["runAsUser"]) == uid
    security = container("gateway")["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_gateway_points_at_the_tf_serving_service() -> None:
    env = {item["name"]: item["value"] for item in container("gateway")["env"]}
    services = {
        doc["metadata"]["name"]: {port["port"] for port in doc["spec"]["ports"]}
        for name in ("gateway", "tensorflow-serving")
        for doc in load_all(KUBE / f"{name}.yaml")
        if doc["kind"] == "Service"
    }
    assert services == {"gateway": {8000}, "tensorflow-serving": {8500, 8501}}
    assert env["TF_SERVING_URL"] == "http://tensorflow-serving:8501/v1/models/mobilenet:predict"
    assert env["TF_SERVING_GRPC_TARGET"] == "tensorflow-serving:8500"


def test_models_are_mounted_read_only_everywhere() -> None:
    for name in ("gateway", "tensorflow-serving"):
        mounts = {m["mountPath"]: m for m in container(name)["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True


def test_kustomization_lists_files_that_exist() -> None:
    kustomization = load_all(KUBE / "kustomization.yaml")[0]
    for resource in kustomization["resources"]:
        assert (KUBE / resource).is_file()
    for generator in kustomization["configMapGenerator"]:
        for entry in generator["files"]:
            assert (KUBE / entry.split("=", 1)[1]).resolve().is_file()
