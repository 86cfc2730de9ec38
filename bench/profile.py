"""`make profile`: where a gateway under load spends its CPU, sampled with py-spy.

Issue 14 asks where the gateway's CPU goes between the model's own speed and
what it serves. This starts one gateway (embedded, or TF Serving over gRPC in
front of the double) on `--model-dir`, loads it with the benchmark's lean
client at `--concurrency` with the benchmark's 480x360 upload (multipart or
`--raw`), and runs `py-spy record` on it meanwhile (no change to the gateway,
no restart). It prints the samples by thread group and innermost frame
(bench/stacks.py) and keeps py-spy's raw stacks beside the results, for a
flame graph. py-spy attaches with ptrace: run it as root, or with
CAP_SYS_PTRACE, or with kernel.yama.ptrace_scope = 0.
"""

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from bench import loadgen
from bench.harness import Process
from bench.images import make_uploads
from bench.servers import start_double, start_gateway
from bench.stacks import render_profile, summarise

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RATE_HZ = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model-name", default="mobilenet")
    parser.add_argument("--backend", choices=("embedded", "tfserving"), default="embedded")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds sampled")
    parser.add_argument("--raw", action="store_true", help="send the image as the raw body")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        parser.error("py-spy is not installed: make venv installs it (the dev extra)")
    model_dir = args.model_dir.resolve() / args.model_name
    logs = args.results_dir / f"{datetime.now():%Y%m%d-%H%M%S}-profile"
    logs.mkdir(parents=True, exist_ok=True)
    with _gateway(args.backend, model_dir, logs) as gateway:
        host, port = "127.0.0.1", int(gateway.url.rsplit(":", 1)[1])
        upload = make_uploads()["480x360"].data
        request = (
            loadgen.raw_request(host, port, "/predict", upload)
            if args.raw
            else loadgen.multipart_request(host, port, "/predict", upload)
        )
        asyncio.run(loadgen.drive(host, port, request, args.concurrency, 2.0, 100_000))
        stacks = logs / "py-spy.txt"
        assert gateway.popen is not None
        command = [spy, "record", "--pid", str(gateway.popen.pid), "--output", str(stacks)]
        command += ["--duration", f"{args.duration:g}", "--rate", str(RATE_HZ)]
        command += ["--format", "raw", "--threads", "--nonblocking"]
        sampler = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)  # py-spy attaches before the measured load starts
        load = asyncio.run(
            loadgen.drive(host, port, request, args.concurrency, args.duration, 1_000_000)
        )
        _, errors = sampler.communicate()
    if sampler.returncode != 0 or not stacks.exists():
        print(f"py-spy failed: {errors.decode(errors='replace')[-2000:]}", file=sys.stderr)
        return 1
    profile = summarise(stacks.read_text().splitlines())
    encoding = "raw body" if args.raw else "multipart"
    print(f"### Profile: {args.backend}, 480x360 {encoding}, c={args.concurrency}\n")
    print(render_profile(profile, load.measurement.per_second, args.duration, RATE_HZ))
    print(f"\nRaw stacks (for a flame graph): {stacks}")
    return 0


@contextlib.contextmanager
def _gateway(backend: str, model_dir: Path, logs: Path) -> Iterator[Process]:
    env = {"MODEL_BASE_PATH": str(model_dir.parent), "MODEL_NAME": model_dir.name}
    if backend == "embedded":
        gateway = start_gateway("embedded", logs, {**env, "INFERENCE_BACKEND": "embedded"})
        try:
            yield gateway
        finally:
            gateway.stop()
        return
    double = start_double(model_dir, logs)
    try:
        env |= {
            "INFERENCE_BACKEND": "tfserving",
            "TF_SERVING_URL": f"{double.url}/v1/models/{model_dir.name}:predict",
            "TF_SERVING_GRPC_TARGET": double.grpc_target,
            "TF_SERVING_TRANSPORT": "grpc",
        }
        gateway = start_gateway("tfserving-grpc", logs, env)
        try:
            yield gateway
        finally:
            gateway.stop()
    finally:
        double.stop()


if __name__ == "__main__":
    raise SystemExit(main())
