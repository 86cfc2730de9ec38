"""deploy/kubernetes stays up through load, drains and rollouts, on every overlay's rendering.

The gateway's gRPC channel reaches every TF Serving pod (a headless Service and
connections that age out), both Deployments drain before they stop (preStop
sleeps and grace periods against the gateway's timeouts), the autoscaler has a
CPU request to measure against, disruption budgets select their pods and let a
drain proceed, and topology spread counts the pods it is meant to spread. What
only a cluster can show is listed in docs/kubernetes.md.
"""

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from gateway.settings import Settings
from kubernetes_rendering import OVERLAYS, POD_NAMES, Rendering, quantity, render, selects
from test_deployment_files import TF_SERVING_GRPC_PORT, TF_SERVING_REST_PORT, tf_serving_flags

GRPC_TARGET = re.compile(r"dns:///(?P<host>[a-z0-9-]+):(?P<port>\d+)")
# gRPC spreads each connection's age by up to this much (the max_connection_age jitter
# of gRFC A9, https://github.com/grpc/proposal/blob/master/A9-server-side-conn-mgt.md).
CONNECTION_AGE_JITTER = 1.1


@pytest.fixture(scope="module", params=OVERLAYS)
def rendering(request: pytest.FixtureRequest) -> Rendering:
    return render(request.param)


def setting(rendering: Rendering, name: str) -> float:
    """A gateway setting as the Deployment sets it, else the Settings default."""
    raw = rendering.plain_env("gateway").get(name.upper())
    return float(raw) if raw is not None else float(Settings.model_fields[name].default)


def service(rendering: Rendering, name: str) -> dict[str, Any]:
    return dict(rendering.named("Service", name)["spec"])


def container_port(rendering: Rendering, pod: str, target: int | str) -> int:
    """The container port a Service's targetPort names (by name or number)."""
    named = {port["name"]: port["containerPort"] for port in rendering.container(pod)["ports"]}
    return int(named.get(str(target), target))


def pod_selected_by(rendering: Rendering, selector: dict[str, Any]) -> str:
    """The one Deployment whose pods the selector selects."""
    selected = [name for name in POD_NAMES if selects(selector, rendering.pod_labels(name))]
    assert len(selected) == 1, f"{selector} selects the pods of {selected}"
    return selected[0]


def pre_stop_sleep(rendering: Rendering, pod: str) -> int:
    """The seconds of the container's preStop sleep, the kubelet's own action."""
    pre_stop = rendering.container(pod)["lifecycle"]["preStop"]
    # Not `exec: sleep`: the action needs no binary in the image and no shell.
    assert set(pre_stop) == {"sleep"}
    return int(pre_stop["sleep"]["seconds"])


def test_gateway_calls_tf_serving_through_the_headless_service(rendering: Rendering) -> None:
    match = GRPC_TARGET.fullmatch(rendering.plain_env("gateway")["TF_SERVING_GRPC_TARGET"])
    assert match, "the target must use the dns resolver, which returns every pod's address"
    assert match["host"] == "tensorflow-serving-grpc"
    spec = service(rendering, match["host"])
    # Headless: DNS answers with the pods, and the channel balances calls over them.
    assert spec["clusterIP"] == "None"
    # Only ready pods resolve: not one still loading, not one terminating.
    assert spec.get("publishNotReadyAddresses", False) is False
    # A Service selects by plain labels.
    assert pod_selected_by(rendering, {"matchLabels": spec["selector"]}) == "tensorflow-serving"
    (port,) = [port for port in spec["ports"] if port["port"] == int(match["port"])]
    assert port["name"] == "grpc"
    assert container_port(rendering, "tensorflow-serving", port["targetPort"]) == (
        TF_SERVING_GRPC_PORT
    )
    # Headless means no port translation: the gateway dials each pod on the target's port.
    assert int(match["port"]) == TF_SERVING_GRPC_PORT


def test_gateway_reads_status_through_the_cluster_ip_service(rendering: Rendering) -> None:
    url = urlsplit(rendering.plain_env("gateway")["TF_SERVING_URL"])
    assert url.scheme == "http"
    assert url.path in ("", "/"), "a bare address: the gateway adds each model's path"
    spec = service(rendering, str(url.hostname))
    assert spec.get("clusterIP") != "None"
    # A Service selects by plain labels.
    assert pod_selected_by(rendering, {"matchLabels": spec["selector"]}) == "tensorflow-serving"
    (port,) = [port for port in spec["ports"] if port["port"] == url.port]
    assert container_port(rendering, "tensorflow-serving", port["targetPort"]) == (
        TF_SERVING_REST_PORT
    )


def connection_age_seconds(rendering: Rendering) -> float:
    """grpc.max_connection_age_ms from TF Serving's --grpc_channel_arguments, in seconds."""
    flags = tf_serving_flags({"command": rendering.container("tensorflow-serving")["args"]})
    # TFS/model_servers/server.cc, parseGrpcChannelArgs: comma-separated key=value pairs.
    arguments = dict(pair.split("=", 1) for pair in flags["grpc_channel_arguments"].split(","))
    return int(arguments["grpc.max_connection_age_ms"]) / 1000


def test_tf_serving_ages_connections_so_gateways_find_new_pods(rendering: Rendering) -> None:
    age = connection_age_seconds(rendering)
    # Long enough not to reconnect all the time, short enough to find a new pod soon.
    assert 5 <= age <= 300


def test_tf_serving_serves_until_every_gateway_has_moved_away(rendering: Rendering) -> None:
    sleep = pre_stop_sleep(rendering, "tensorflow-serving")
    # A connection opened just before the pod began terminating ages out last; the
    # calls already on it then run at most the gateway's TF Serving timeout.
    drained = connection_age_seconds(rendering) * CONNECTION_AGE_JITTER + setting(
        rendering, "tf_serving_timeout_seconds"
    )
    assert sleep >= drained
    assert rendering.pod_spec("tensorflow-serving")["terminationGracePeriodSeconds"] > sleep


def test_gateway_finishes_accepted_requests_within_the_grace_period(rendering: Rendering) -> None:
    grace = rendering.pod_spec("gateway")["terminationGracePeriodSeconds"]
    # Set outright: the deployment's timeline must not follow a default that may move.
    shutdown = float(rendering.plain_env("gateway")["SHUTDOWN_TIMEOUT_SECONDS"])
    sleep = pre_stop_sleep(rendering, "gateway")
    # The grace period counts from the start of preStop; SIGKILL ends it.
    assert sleep + shutdown < grace
    assert sleep > 0, "without a sleep, requests routed by stale endpoints meet a closed port"
    # A request accepted just before SIGTERM may run to its own deadline.
    assert shutdown >= setting(rendering, "request_timeout_seconds")


def test_every_autoscaler_targets_a_deployment_with_cpu_requests(rendering: Rendering) -> None:
    for autoscaler in rendering.of_kind("HorizontalPodAutoscaler"):
        spec = autoscaler["spec"]
        target = spec["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert metric["resource"]["target"]["type"] == "Utilization"
        # Utilization is a share of the request: without one the HPA never scales.
        for container in rendering.pod_spec(target["name"])["containers"]:
            assert quantity(container["resources"]["requests"]["cpu"]) > 0
        # `kubectl apply` would otherwise reset the count the HPA chose.
        assert "replicas" not in rendering.deployment(target["name"])["spec"]


def test_every_disruption_budget_selects_one_deployment_and_lets_a_drain_through(
    rendering: Rendering,
) -> None:
    for budget in rendering.of_kind("PodDisruptionBudget"):
        spec = budget["spec"]
        name = pod_selected_by(rendering, spec["selector"])
        fewest = rendering.fewest_replicas(name)
        if "maxUnavailable" in spec:
            allowed = spec["maxUnavailable"]
            assert isinstance(allowed, int), "a percentage is not read by this test"
            # One pod may go, and one still serves while it does.
            assert 1 <= allowed < fewest
        else:
            required = spec["minAvailable"]
            assert isinstance(required, int), "a percentage is not read by this test"
            # At the fewest replicas, minAvailable equal to them would block every drain.
            assert 1 <= required < fewest


def test_topology_spread_counts_the_pods_it_spreads(rendering: Rendering) -> None:
    for name in POD_NAMES:
        for constraint in rendering.pod_spec(name).get("topologySpreadConstraints", []):
            assert pod_selected_by(rendering, constraint["labelSelector"]) == name
            # Per revision: a rollout's new pods spread without counting the old.
            assert constraint.get("matchLabelKeys") == ["pod-template-hash"]


def test_production_scales_the_gateway_and_keeps_two_tf_servings() -> None:
    production = render("production")
    autoscaler = production.autoscaler_of("gateway")
    assert autoscaler is not None
    assert autoscaler["spec"]["minReplicas"] >= 3
    assert production.fewest_replicas("tensorflow-serving") >= 2
    guarded = {
        pod_selected_by(production, budget["spec"]["selector"])
        for budget in production.of_kind("PodDisruptionBudget")
    }
    assert guarded == set(POD_NAMES)


@pytest.mark.parametrize("name", POD_NAMES)
def test_production_spreads_over_nodes_hard_and_zones_soft(name: str) -> None:
    constraints = render("production").pod_spec(name)["topologySpreadConstraints"]
    rules = {c["topologyKey"]: c["whenUnsatisfiable"] for c in constraints}
    # Zones soft: a cluster whose nodes carry no zone label must still schedule.
    assert rules == {
        "kubernetes.io/hostname": "DoNotSchedule",
        "topology.kubernetes.io/zone": "ScheduleAnyway",
    }
    for constraint in constraints:
        assert constraint["maxSkew"] == 1


def test_dev_runs_one_of_each_without_autoscaler_or_budgets() -> None:
    dev = render("dev")
    for name in POD_NAMES:
        assert dev.deployment(name)["spec"]["replicas"] == 1
        assert "topologySpreadConstraints" not in dev.pod_spec(name)
    assert not dev.of_kind("HorizontalPodAutoscaler")
    assert not dev.of_kind("PodDisruptionBudget")
