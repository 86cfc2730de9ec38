"""`python -m bench.replicas`: throughput through nginx in front of one, two, three gateways.

The `scaled` compose profile on one machine: deploy/nginx/nginx.conf (started
the way test/e2e/test_nginx_replicas.py starts it, test/nginx_front.py) in front
of N gateway processes, every one predicting over gRPC from the same TF Serving
double. Each row gives requests per second, p50 and p99 from the client, and
the CPU time each kind of process spent per request, so docs/capacity.md can
relate throughput to CPU: on a machine with fewer cores than the processes
want, another replica adds contention, not capacity, and the CPU columns show
where the time went. Needs the `nginx` executable (Debian's package will do).
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bench.harness  # noqa: F401  (puts test/ on sys.path for nginx_front)
from bench import loadgen
from bench.images import make_uploads
from bench.machine import describe_machine
from bench.servers import Process, start_double, start_gateway
from bench.watch import busy_cpu_seconds, tree_cpu_seconds
from nginx_front import nginx_front

CONCURRENCY = 16


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model-name", default="mobilenet")
    parser.add_argument("--replicas", default="1,2,3", help="comma-separated replica counts")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument(
        "--image",
        default="480x360",
        help="480x360 (the model server is the bottleneck) or '12 MP' (decoding in the gateways)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before each one")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Measure every replica count, print a table and one JSON line (bad usage exits 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    counts = sorted({int(part) for part in args.replicas.split(",") if part.strip()})
    if not counts or counts[0] < 1:
        parser.error("--replicas wants positive counts, e.g. 1,2,3")
    model_dir = args.model_dir.resolve() / args.model_name
    if not model_dir.is_dir():
        parser.error(f"no model folder {model_dir}: export one first (make export)")
    uploads = make_uploads()
    if args.image not in uploads:
        parser.error(f"--image: choose from {', '.join(map(repr, uploads))}")
    upload = uploads[args.image].data
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as scratch:
        logs = Path(scratch)
        with _running([start_double(model_dir, logs)]) as (double,):
            env = {
                "INFERENCE_BACKEND": "tfserving",
                "TF_SERVING_URL": f"{double.url}/v1/models/{model_dir.name}:predict",
                "TF_SERVING_GRPC_TARGET": double.grpc_target,
                "MODEL_BASE_PATH": str(model_dir.parent),
                "MODEL_NAME": model_dir.name,
            }
            gateways: list[Process] = []
            with _running(gateways):
                for count in counts:
                    while len(gateways) < count:
                        _progress(f"starting gateway {len(gateways) + 1}")
                        gateways.append(start_gateway(f"replica-{len(gateways)}", logs, env))
                    _progress(f"{count} replica(s) behind nginx")
                    addresses = [g.url.removeprefix("http://") for g in gateways[:count]]
                    front = nginx_front(addresses, logs / f"nginx-{count}")
                    with _running([front.start()]):
                        rows.append(_measure(args, upload, front, double, gateways[:count]))
    print(render(rows, args.image, args.concurrency))
    print(json.dumps({"bench": "replicas", "machine": describe_machine(), "rows": rows}))
    return 0


def _measure(
    args: argparse.Namespace,
    upload: bytes,
    front: Process,
    double: Process,
    replicas: list[Process],
) -> dict[str, Any]:
    """One measured run through `front`, with the CPU each process spent during it."""
    host, _, port = front.url.removeprefix("http://").rpartition(":")
    request = loadgen.multipart_request(host, int(port), "/predict", upload)
    budget = 10**9  # bounded by time, not count

    def run(seconds: float) -> loadgen.LoadResult:
        return asyncio.run(
            loadgen.drive(host, int(port), request, args.concurrency, seconds, budget)
        )

    run(args.warmup)
    roles = {"nginx": [front], "gateways": replicas, "double": [double]}
    before = {role: _cpu(processes) for role, processes in roles.items()}
    machine_before = busy_cpu_seconds()
    result = run(args.duration)
    machine_busy = busy_cpu_seconds() - machine_before
    spent = {role: _cpu(processes) - before[role] for role, processes in roles.items()}
    spent["client"] = result.client_cpu_s
    served = max(result.measurement.items, 1)
    elapsed = result.measurement.elapsed_s
    ours = sum(spent.values())
    return {
        "replicas": len(replicas),
        "image": args.image,
        "concurrency": args.concurrency,
        **result.measurement.to_json(),
        "statuses": result.statuses,
        "cpu_ms_per_request": {role: round(s * 1000 / served, 2) for role, s in spent.items()},
        "cores_busy": {role: round(s / elapsed, 2) for role, s in spent.items()},
        # Throughput per core our processes kept busy: steadier than req/s while
        # the neighbours' share of the machine comes and goes.
        "per_cpu_second": round(result.measurement.items / ours, 2) if ours else 0.0,
        # Everything else on the machine during the run: the neighbours' share of the cores.
        "cores_busy_other": round((machine_busy - sum(spent.values())) / elapsed, 2),
    }


def render(rows: list[dict[str, Any]], image: str, concurrency: int) -> str:
    """A markdown table: one row per replica count."""
    lines = [
        f"### Through nginx, {image} JPEG, c={concurrency}",
        "",
        "| replicas | req/s | p50 ms | p99 ms | non-200 | CPU ms per request: gateways "
        "| double | nginx | client | cores busy: ours | others | req per CPU second |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        cpu = row["cpu_ms_per_request"]
        lines.append(
            f"| {row['replicas']} | {row['per_second']:.1f} | {row['p50_ms']:.1f} "
            f"| {row['p99_ms']:.1f} | {row['failures']} | {cpu['gateways']:.2f} "
            f"| {cpu['double']:.2f} | {cpu['nginx']:.2f} | {cpu['client']:.2f} "
            f"| {sum(row['cores_busy'].values()):.2f} | {row['cores_busy_other']:.2f} "
            f"| {row['per_cpu_second']:.1f} |"
        )
    return "\n".join(lines)


def _cpu(processes: list[Process]) -> float:
    return sum(tree_cpu_seconds(p.popen.pid) for p in processes if p.popen is not None)


@contextmanager
def _running(processes: list[Process]) -> Iterator[list[Process]]:
    """Yield `processes` (a list that may grow inside) and stop every one of them after."""
    try:
        yield processes
    finally:
        for process in reversed(processes):
            process.stop()


def _progress(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
