"""`python -m bench.capacity`: how many gateway and TF Serving replicas a request rate needs.

The inputs are measured, not guessed: a `make bench` result (bench/results/*.json)
gives, for the TF Serving path over gRPC with a 480x360 photo, the CPU the gateway
spends per request and the CPU the model server spends per image (each process's
CPU time over the requests it served at concurrency 16), and the end-to-end p99
of a lone request. docs/capacity.md explains the model; in short:

- Each replica is a queue with as many servers as it has cores, each request
  holding one core for its CPU time (M/M/c). Erlang's C formula gives the chance
  a request waits and the 99th percentile of that wait; the plan adds the
  gateway's and the model server's wait to the lone request's p99.
- Replicas are added until that p99 meets the target and no tier runs above
  `--max-utilisation` (load spikes and noisy neighbours need headroom that a
  steady-state formula does not see).

With `--replicas-result FILE` (bench/replicas.py's JSON) it also predicts what
that run measured: gateways, the double and nginx sharing one machine's cores,
throughput = cores / (CPU per request of all three), and prints the prediction
beside the measurement for one, two and three replicas.

Written here rather than taken from a library: the whole model is Erlang's C
formula and a loop; a queueing package would bring more than it saves.
"""

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
# The row the plan is built from: the deployed shape (gateway in front of TF Serving).
_ROW = {"backend": "tfserving grpc", "image": "480x360", "concurrency": 16}


@dataclass(frozen=True)
class Costs:
    """Measured CPU per request, in seconds, and the lone request's p99."""

    gateway_cpu_s: float
    model_cpu_s: float
    lone_p99_s: float


def erlang_c(servers: int, offered: float) -> float:
    """The probability that a request waits, in an M/M/c queue offered `offered` Erlangs."""
    if offered >= servers:
        return 1.0
    term, total = 1.0, 1.0  # a^k / k!, summed for k < servers
    for k in range(1, servers):
        term *= offered / k
        total += term
    top = term * offered / servers / (1.0 - offered / servers)
    return top / (total + top)


def wait_p99_s(servers: int, rate: float, service_s: float) -> float:
    """The 99th percentile of the queueing wait; infinite past saturation."""
    offered = rate * service_s
    if offered >= servers:
        return math.inf
    waiting = erlang_c(servers, offered)
    if waiting <= 0.01:
        return 0.0
    return service_s / (servers - offered) * math.log(waiting / 0.01)


def tier_p99_wait_s(replicas: int, cores: int, rate: float, service_s: float) -> float:
    """One tier of replicas, each receiving an equal share of the rate."""
    return wait_p99_s(cores, rate / replicas, service_s)


def plan(costs: Costs, rate: float, p99_s: float, cores: int, max_util: float) -> dict[str, Any]:
    """The fewest replicas of each tier (gateway first) meeting the p99 and utilisation caps."""
    gateways = max(1, math.ceil(rate * costs.gateway_cpu_s / (cores * max_util)))
    servers = max(1, math.ceil(rate * costs.model_cpu_s / (cores * max_util)))
    for _ in range(1000):
        gateway_wait = tier_p99_wait_s(gateways, cores, rate, costs.gateway_cpu_s)
        model_wait = tier_p99_wait_s(servers, cores, rate, costs.model_cpu_s)
        predicted = costs.lone_p99_s + gateway_wait + model_wait
        if predicted <= p99_s:
            break
        # Grow the tier that waits longer: it buys the most p99 per replica.
        if gateway_wait >= model_wait:
            gateways += 1
        else:
            servers += 1
    return {
        "gateway_replicas": gateways,
        "tf_serving_replicas": servers,
        "gateway_utilisation": round(rate * costs.gateway_cpu_s / (gateways * cores), 3),
        "tf_serving_utilisation": round(rate * costs.model_cpu_s / (servers * cores), 3),
        "predicted_p99_ms": round(predicted * 1000.0, 1),
    }


def costs_from(result: dict[str, Any]) -> Costs:
    """The plan's inputs from one `make bench` result."""
    pipeline = result["pipeline"]["rows"]
    rows = [row for row in pipeline if _matches(row)]
    if not rows:
        raise SystemExit("the result has no TF Serving gRPC row at concurrency 16")
    row = rows[0]
    throughput = row["per_second"]
    gateway = row["cores"]["gateway"]
    model = sum(cores for name, cores in row["cores"].items() if name != "gateway")
    lone = [
        other
        for other in pipeline
        if other["backend"] == row["backend"] and other["image"] == row["image"]
        if other["concurrency"] == 1
    ]
    lone_p99 = (lone[0] if lone else row)["p99_ms"] / 1000.0
    return Costs(gateway / throughput, model / throughput, lone_p99)


def _matches(row: dict[str, Any]) -> bool:
    return all(row.get(key) == value for key, value in _ROW.items())


def latest_result() -> Path:
    found = sorted(RESULTS.glob("*.json"))
    if not found:
        raise SystemExit("no bench/results/*.json: run `make bench` first")
    return found[-1]


def shared_machine_rows(replicas: dict[str, Any], costs: Costs) -> list[dict[str, Any]]:
    """Predicted throughput of bench/replicas.py's runs, beside what they measured.

    Everything shares the machine's cores there, so adding gateways adds no CPU:
    the prediction is cores / CPU per request, where the gateway's and the model
    server's share come from `make bench` and only what that run has no figure
    for (nginx, and the load generator on the same cores) from the replicas run.
    """
    cores = replicas["machine"]["cores"]
    rows = []
    for run in replicas["rows"]:
        measured_cpu = run["cpu_ms_per_request"]
        extra_s = (measured_cpu.get("nginx", 0.0) + measured_cpu.get("client", 0.0)) / 1000.0
        per_request = costs.gateway_cpu_s + costs.model_cpu_s + extra_s
        predicted = cores / per_request
        rows.append(
            {
                "replicas": run["replicas"],
                "predicted_per_s": round(predicted, 1),
                "measured_per_s": round(run["per_second"], 1),
                "measured_over_predicted": round(run["per_second"] / predicted, 3),
                "measured_gateway_cpu_ms": measured_cpu.get("gateways"),
                "measured_model_cpu_ms": measured_cpu.get("double"),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-result", type=Path, help="default: the newest in bench/results")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--p99-ms", type=float, default=250.0)
    parser.add_argument("--cores", type=int, default=2, help="CPU limit of each replica")
    parser.add_argument("--max-utilisation", type=float, default=0.7)
    parser.add_argument("--replicas-result", type=Path, help="bench/replicas.py's JSON")
    args = parser.parse_args()
    path = args.bench_result or latest_result()
    costs = costs_from(json.loads(path.read_text()))
    report: dict[str, Any] = {
        "bench_result": path.name,
        "gateway_cpu_ms_per_request": round(costs.gateway_cpu_s * 1000.0, 2),
        "model_cpu_ms_per_image": round(costs.model_cpu_s * 1000.0, 2),
        "lone_request_p99_ms": round(costs.lone_p99_s * 1000.0, 1),
        "plan": plan(costs, args.rate, args.p99_ms / 1000.0, args.cores, args.max_utilisation),
    }
    if args.replicas_result is not None:
        replicas = json.loads(args.replicas_result.read_text())
        report["shared_machine_check"] = shared_machine_rows(replicas, costs)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
