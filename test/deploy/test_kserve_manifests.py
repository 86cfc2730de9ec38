"""deploy/kserve: an InferenceService KServe accepts, with the gateway as its transformer.

The manifest is validated with check-jsonschema against KServe's own
InferenceService schema (test/deploy/schemas/kserve, provenance there). That
schema accepts unknown fields, so the two pod specs are also validated
strictly against Kubernetes' schemas. The rest holds the manifest to what
KServe does with it, read from kserve/kserve at the schema's commit
(docs/kserve.md): the arguments a custom transformer gets, the container its
storage-initializer mounts /mnt/models into, the TF Serving runtime's ports.
Only a cluster proves that KServe then runs it; these tests prove the file
says what KServe needs to hear.
"""

import copy
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from gateway.command_line import settings_from_arguments
from gateway.settings import Settings
from kubernetes_rendering import KUBERNETES_VERSION, quantity, selects
from test_deployment_files import (
    TF_SERVING_FLAGS,
    GatewaySizing,
    assert_sized,
    dockerfile_arguments,
    pinned_tensorflow_version,
    read_batching_parameters,
    read_compose,
    run_tool,
    tf_serving_memory_bytes,
)

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "deploy" / "kserve"
MANIFEST = KSERVE / "inferenceservice.yaml"
SCHEMA_DIR = ROOT / "test" / "deploy" / "schemas" / "kserve"
SCHEMA = SCHEMA_DIR / "inferenceservice-v1beta1.schema.json"

# pkg/constants/constants.go: the port a transformer is told to listen on
# (InferenceServiceDefaultHttpPort), the container name a custom transformer is
# given and the storage-initializer mounts into (InferenceServiceContainerName),
# and where it mounts the model (DefaultModelLocalMountPath).
KSERVE_HTTP_PORT = 8080
KSERVE_CONTAINER = "kserve-container"
KSERVE_MODEL_DIR = "/mnt/models"
# config/runtimes/kserve-tensorflow-serving.yaml: the flags the runtime sets itself.
RUNTIME_FLAGS = {"model_name", "port", "rest_api_port", "model_base_path", "rest_api_timeout_in_ms"}
# Fields of KServe's component specs beside the pod spec they inline
# (pkg/apis/serving/v1beta1/component.go, predictor.go).
KSERVE_COMPONENT_FIELDS = {
    *("minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType"),
    *("autoScaling", "containerConcurrency", "timeout", "canaryTrafficPercent", "logger"),
    *("batcher", "labels", "annotations", "deploymentStrategy", "storageUris", "model"),
}
KSERVE_MODEL_FIELDS = {"modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri"}
NAMESPACE = "ml"


@pytest.fixture(scope="module")
def isvc() -> dict[str, Any]:
    document = YAML(typ="safe").load(MANIFEST)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def gateway(isvc: dict[str, Any]) -> dict[str, Any]:
    (only,) = isvc["spec"]["transformer"]["containers"]
    return dict(only)


@pytest.fixture(scope="module")
def model(isvc: dict[str, Any]) -> dict[str, Any]:
    return dict(isvc["spec"]["predictor"]["model"])


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """What `kubectl apply -k deploy/kserve` would send."""
    result = run_tool("kubectl", "kustomize", str(KSERVE.relative_to(ROOT)))
    assert result.returncode == 0, result.stderr
    return [doc for doc in YAML(typ="safe").load_all(result.stdout) if doc]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def kserve_arguments(isvc: dict[str, Any]) -> list[str]:
    """What KServe appends to a custom transformer's args (transformer_custom.go, GetContainer)."""
    name = isvc["metadata"]["name"]
    # PredictorServiceName(name), then the namespace; its Service forwards port 80 to 8080.
    predictor_host = f"{name}-predictor.{NAMESPACE}"
    port = str(KSERVE_HTTP_PORT)
    return ["--model_name", name, "--predictor_host", predictor_host, "--http_port", port]


def as_pod(component: dict[str, Any], containers: list[dict[str, Any]]) -> dict[str, Any]:
    """A component's pod spec as a Pod, its KServe-only fields left out."""
    spec = {key: value for key, value in component.items() if key not in KSERVE_COMPONENT_FIELDS}
    spec["containers"] = containers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "view"}, "spec": spec}


# Deliberate breakages of typed fields (the schema accepts unknown ones): where,
# the wrong value, and the start of the message check-jsonschema must give.
BREAKAGES = {
    "misspelt-enum": (("spec", "transformer", "scaleMetric"), "cpus", "'cpus' is not one of"),
    "wrong-type": (
        ("spec", "transformer", "terminationGracePeriodSeconds"),
        "45",
        "'45' is not of type 'integer'",
    ),
    "missing-required": (
        ("spec", "predictor", "model", "modelFormat"),
        {"version": "2"},
        "'name' is a required property",
    ),
    "wrong-kind": (("kind",), "InferenceServices", "'InferenceServices' is not one of"),
}


@pytest.fixture(scope="module")
def schema_check(isvc: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """check-jsonschema's report on the manifest and on each broken copy, in one run."""
    folder = tmp_path_factory.mktemp("broken")
    for label, (where, value, _) in BREAKAGES.items():
        broken = copy.deepcopy(isvc)
        parent = broken
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
        YAML(typ="safe").dump(broken, folder / f"{label}.yaml")
    copies = [str(folder / f"{label}.yaml") for label in BREAKAGES]
    result = run_tool("check-jsonschema", "--schemafile", str(SCHEMA), str(MANIFEST), *copies)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout


def test_schema_is_the_copy_its_readme_names() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text(encoding="utf-8")
    (recorded,) = re.findall(r"`([0-9a-f]{64})`", readme)
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == recorded
    assert "Apache License" in (SCHEMA_DIR / "LICENSE").read_text(encoding="utf-8")


def test_inferenceservice_passes_kserves_schema(schema_check: str) -> None:
    assert MANIFEST.name not in schema_check


@pytest.mark.parametrize("label", BREAKAGES)
def test_schema_check_refuses_a_broken_copy(schema_check: str, label: str) -> None:
    where, _, message = BREAKAGES[label]
    path = "$." + ".".join(where)
    reports = [
        line.split("::", 1)[1] for line in schema_check.splitlines() if f"{label}.yaml::" in line
    ]
    assert len(reports) == 1, schema_check
    assert reports[0].startswith(f"{path}: {message}"), reports


def test_pod_specs_match_the_kubernetes_schemas(
    isvc: dict[str, Any], gateway: dict[str, Any], model: dict[str, Any]
) -> None:
    server = {key: value for key, value in model.items() if key not in KSERVE_MODEL_FIELDS}
    server["name"] = KSERVE_CONTAINER
    pods = {
        "transformer": as_pod(isvc["spec"]["transformer"], [gateway]),
        "predictor": as_pod(isvc["spec"]["predictor"], [server]),
    }
    for name, pod in pods.items():
        try:
            kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            pytest.fail(f"{name} {where}: {error.message}")


def test_kustomization_renders_the_service_and_what_it_mounts(
    isvc: dict[str, Any], rendered: list[dict[str, Any]]
) -> None:
    (rendered_isvc,) = [doc for doc in rendered if doc["kind"] == "InferenceService"]
    assert rendered_isvc == isvc
    config_maps = {doc["metadata"]["name"]: doc for doc in rendered if doc["kind"] == "ConfigMap"}
    (volume,) = [v for v in isvc["spec"]["predictor"]["volumes"] if "configMap" in v]
    assert "batching.pbtxt" in config_maps[volume["configMap"]["name"]]["data"]
    for doc in rendered:
        if doc["kind"] != "InferenceService":
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_transformer_is_the_compose_gateway_image_run_by_its_entrypoint(
    gateway: dict[str, Any],
) -> None:
    assert gateway["image"] == read_compose()["services"]["gateway"]["image"]
    # KServe appends its flags to the args, which would replace a CMD; an own
    # command would replace the ENTRYPOINT, own args hide the flags KServe skips.
    assert "command" not in gateway
    assert "args" not in gateway
    assert dockerfile_arguments("ENTRYPOINT") == ['["python", "-m", "gateway"]']


def test_probes_use_the_gateway_health_paths_on_kserves_port(gateway: dict[str, Any]) -> None:
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": 8080}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": 8080}
    assert [port["containerPort"] for port in gateway["ports"]] == [KSERVE_HTTP_PORT]


def test_gateway_settings_accept_the_env_and_kserves_arguments(
    isvc: dict[str, Any], gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in env_of(gateway).items():
        monkeypatch.setenv(name, value)
    settings = Settings(**settings_from_arguments(kserve_arguments(isvc)))
    name = isvc["metadata"]["name"]
    assert settings.model_name == name
    assert (
        settings.tf_serving_url == f"http://{name}-predictor.{NAMESPACE}/v1/models/{name}:predict"
    )
    assert settings.tf_serving_transport == "rest"
    assert settings.inference_backend == "tfserving"
    assert settings.port == KSERVE_HTTP_PORT
    assert settings.model_dir == Path(KSERVE_MODEL_DIR)


def test_transformer_sees_the_predictors_model_folder(
    gateway: dict[str, Any], model: dict[str, Any]
) -> None:
    # The storage-initializer injector mounts STORAGE_URI's folder at /mnt/models
    # into kserve-container only (pkg/webhook/admission/pod/storage_initializer_injector.go).
    assert gateway["name"] == KSERVE_CONTAINER
    assert env_of(gateway)["STORAGE_URI"] == model["storageUri"]
    assert KSERVE_MODEL_DIR not in [mount["mountPath"] for mount in gateway["volumeMounts"]]


def test_predictor_is_tf_serving_at_the_compose_pin(model: dict[str, Any]) -> None:
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["runtime"] == "kserve-tensorflow-serving"
    assert model["protocolVersion"] == "v1"
    compose_image = read_compose()["services"]["tensorflow-serving"]["image"]
    assert f"tensorflow/serving:{model['runtimeVersion']}" == compose_image
    assert model["runtimeVersion"] == pinned_tensorflow_version()


def test_predictor_arguments_are_tf_serving_flags_the_runtime_leaves_free(
    model: dict[str, Any],
) -> None:
    names = [argument.removeprefix("--").split("=", 1)[0] for argument in model["args"]]
    assert set(names) <= TF_SERVING_FLAGS - RUNTIME_FLAGS
    assert "--batching_parameters_file=/config/batching.pbtxt" in model["args"]
    assert {"name": "batching", "mountPath": "/config", "readOnly": True} in model["volumeMounts"]


def test_shutdown_fits_in_the_grace_period(isvc: dict[str, Any], gateway: dict[str, Any]) -> None:
    defaults = Settings.model_fields
    env = env_of(gateway)
    timeout = float(
        env.get("SHUTDOWN_TIMEOUT_SECONDS", defaults["shutdown_timeout_seconds"].default)
    )
    deadline = float(
        env.get("REQUEST_TIMEOUT_SECONDS", defaults["request_timeout_seconds"].default)
    )
    sleep = gateway["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert isvc["spec"]["transformer"]["terminationGracePeriodSeconds"] > sleep + timeout
    assert timeout >= deadline, "a request accepted before SIGTERM may run to its deadline"


def test_containers_run_non_root_read_only_without_privileges(
    isvc: dict[str, Any], gateway: dict[str, Any], model: dict[str, Any]
) -> None:
    security = gateway["securityContext"]
    (uid,) = re.findall(r"^USER (\d+)", (ROOT / "gateway" / "Dockerfile").read_text(), re.M)
    assert (security["runAsNonRoot"], str(security["runAsUser"])) == (True, uid)
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    # The rest of TF Serving's comes from the runtime: UID 1000, every capability dropped.
    assert model["securityContext"] == {"readOnlyRootFilesystem": True}
    for component in ("predictor", "transformer"):
        spec = isvc["spec"][component]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        (tmp,) = [v for v in spec["volumes"] if v["name"] == "tmp"]
        assert quantity(tmp["emptyDir"]["sizeLimit"]) > 0
        assert "medium" not in tmp["emptyDir"], "a memory-backed /tmp needs the formula's share"


def test_requests_and_limits_cover_the_sizing_formula(
    isvc: dict[str, Any], gateway: dict[str, Any], model: dict[str, Any]
) -> None:
    sizing = GatewaySizing.from_environment(env_of(gateway))
    limits = gateway["resources"]["limits"]
    assert_sized(quantity(limits["memory"]), sizing.memory_bytes(0))
    assert env_of(gateway)["PREPROCESS_THREADS"] == str(math.ceil(quantity(limits["cpu"])))
    (tmp,) = [v for v in isvc["spec"]["transformer"]["volumes"] if v["name"] == "tmp"]
    size_limit = quantity(tmp["emptyDir"]["sizeLimit"])
    assert size_limit >= sizing.uploads_bytes()
    assert quantity(gateway["resources"]["requests"]["ephemeral-storage"]) >= size_limit
    server = model["resources"]
    assert_sized(quantity(server["limits"]["memory"]), tf_serving_memory_bytes(0))
    threads = int(read_batching_parameters()["num_batch_threads"][0])
    assert quantity(server["limits"]["cpu"]) == threads


def test_only_the_transformer_reaches_the_predictor(
    isvc: dict[str, Any], rendered: list[dict[str, Any]]
) -> None:
    # KServe's own Ingress would also publish the predictor's host.
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    # The pod labels KServe sets (components/predictor.go, transformer.go).
    name = isvc["metadata"]["name"]
    pods = {
        role: {"serving.kserve.io/inferenceservice": name, "component": role}
        for role in ("predictor", "transformer")
    }
    (policy,) = [doc for doc in rendered if doc["kind"] == "NetworkPolicy"]
    assert selects(policy["spec"]["podSelector"], pods["predictor"])
    assert not selects(policy["spec"]["podSelector"], pods["transformer"])
    (rule,) = policy["spec"]["ingress"]
    assert [selects(peer["podSelector"], pods["transformer"]) for peer in rule["from"]] == [True]
    assert rule["ports"] == [{"protocol": "TCP", "port": KSERVE_HTTP_PORT}]
