"""`python -m bench.floor`: the gateway's own CPU per request in front of TF Serving.

Issue 14 asked at most 1.5 ms of gateway CPU per request in TF Serving mode. This
measures how much of a request's CPU the image accounts for: one gRPC gateway in
front of the TF Serving double, at c=16, with the benchmark's 480x360 upload (a
full decode and a Lanczos resize) and with a 224x224 one (a small decode, and no
resize: the picture is already the model's size). The second is the floor left if
decoding moved out of the gateway (into TF Serving's graph, say): what HTTP, the
form or raw body, the gRPC call and the JSON answer cost by themselves. Prints one
markdown table; the figures come from bench.pipeline.measure_row, as `make bench`'s.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.images import SMALL_SIZE, Upload, make_jpeg
from bench.pipeline import Plan, measure_row, pid_of, running
from bench.servers import start_double, start_gateway

MODEL_SIZE = (224, 224)
CONCURRENCY = 16
ENCODINGS = ("multipart", "raw")


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="DIR",
        help="a model folder (…/models/<name>); the double serves its versions",
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each")
    return parser


def measure(model: Path, duration: float, warmup: float, logs: Path) -> list[dict[str, Any]]:
    """A row per upload and body: requests/s, gateway CPU ms per request, event loop's share."""
    plan = Plan(model, duration, warmup, logs, {}, retries=1)
    uploads = [
        Upload("480x360", SMALL_SIZE, make_jpeg(SMALL_SIZE)),
        Upload("224x224", MODEL_SIZE, make_jpeg(MODEL_SIZE)),
    ]
    rows = []
    with running(start_double(model, logs)) as double:
        served = {"double": pid_of(double)}
        env = {
            "MODEL_BASE_PATH": str(model.parent.resolve()),
            "MODEL_NAME": model.name,
            "INFERENCE_BACKEND": "tfserving",
            "TF_SERVING_URL": f"{double.url}/v1/models/{model.name}:predict",
            "TF_SERVING_GRPC_TARGET": double.grpc_target,
            "TF_SERVING_TRANSPORT": "grpc",
        }
        with running(start_gateway("floor", logs, env)) as gateway:
            for upload in uploads:
                for encoding in ENCODINGS:
                    row = measure_row(
                        plan,
                        "tfserving grpc",
                        "tensorflow",
                        gateway,
                        served,
                        upload,
                        CONCURRENCY,
                        encoding,
                    )
                    rows.append(row)
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    """The markdown table of `measure`'s rows."""
    lines = [
        "| upload | bytes | body | c | req/s | gateway CPU ms/req | of it, event loop ms/req |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        per_second = row["per_second"]
        cores = row["cores"].get("gateway", 0.0)
        loop = row["main_thread_cores"].get("gateway", 0.0)
        lines.append(
            f"| {row['image'].split(' ')[0]} | {row['image_bytes']:,} | {row['encoding']} "
            f"| {row['concurrency']} | {per_second:.1f} | {1000 * cores / per_second:.2f} "
            f"| {1000 * loop / per_second:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    arguments = build_parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as logs:
        rows = measure(arguments.model, arguments.duration, arguments.warmup, Path(logs))
    print(render(rows))


if __name__ == "__main__":
    main()
