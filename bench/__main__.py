"""`python -m bench`: measure the ceiling, the pipeline, preprocessing and the naive baseline.

Prints one markdown report and writes the same results as JSON to
bench/results/<timestamp>.json (git-ignored), with the logs of the processes it
started in bench/results/<timestamp>-logs/.
"""

import argparse
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import ceiling, preprocess
from bench.images import make_smooth_large, make_uploads
from bench.machine import describe_machine
from bench.pipeline import Plan, run_pipeline
from bench.ratios import ceiling_summary, derive
from bench.report import render, write_json
from gateway.embedded import newest_version
from gateway.library_settings import apply_library_settings
from modelexport.contract import IMAGE_SIZE, INPUT_DTYPE

SECTIONS = ("ceiling", "pipeline", "naive", "preprocess")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model-name", default="mobilenet")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 s per measurement, short warm-ups, ceiling batches 1 and 8, no retries",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds per measurement (default 5, or 1 with --quick)"
    )
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a gateway setting for every gateway started (repeatable): BATCH_TIMEOUT_MS=2",
    )
    parser.add_argument(
        "--retries",
        type=int,
        help="measure again, up to this many times, while other processes disturb a "
        "measurement (default 2, or 0 with --quick)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, print the report and write the JSON (bad usage exits 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    sections = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {SECTIONS}")
    gateway_env = dict(_setting(parser, text) for text in args.gateway_env)
    duration = args.duration or (1.0 if args.quick else 5.0)
    warmup = 0.3 if args.quick else 1.0
    retries = args.retries if args.retries is not None else (0 if args.quick else 2)
    # The smoke test only needs batch 1 and one batched size per setting.
    batches = (1, 8) if args.quick else ceiling.BATCHES
    model_dir = args.model_dir.resolve() / args.model_name
    try:
        version = newest_version(model_dir)
    except FileNotFoundError as exc:
        parser.error(f"no model version in {model_dir} ({exc})")

    started = datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "machine": describe_machine(),
        "plan": {
            "model": f"{model_dir} version {version}",
            "input": f"{IMAGE_SIZE}x{IMAGE_SIZE}x3 {INPUT_DTYPE}",
            "duration_s": duration,
            "warmup_s": warmup,
            "retries": retries,
            "gateway_env": gateway_env,
            "sections": sections,
        },
        "notes": [],
    }
    apply_library_settings()  # the preprocessing section runs the gateway's pipeline here
    uploads = make_uploads()
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        if "preprocess" in sections:
            _progress("preprocessing")
            results["preprocess"] = [
                preprocess.compare(upload, max(0.5, duration / 2))
                for upload in (*uploads.values(), make_smooth_large())
            ]
        if "ceiling" in sections:
            results["ceiling"] = {}
            for runtime in ceiling.SETUPS:
                _progress(f"ceiling: {runtime}")
                results["ceiling"][runtime] = ceiling.run_child(
                    model_dir / str(version),
                    runtime,
                    duration,
                    warmup,
                    batches,
                    retries,
                    Path(scratch) / f"ceiling-{runtime}.json",
                )
        if "pipeline" in sections or "naive" in sections:
            logs = args.results_dir / f"{stamp}-logs"
            logs.mkdir(parents=True, exist_ok=True)
            _progress(f"pipeline (process logs in {logs})")
            plan = Plan(model_dir, duration, warmup, logs, gateway_env, retries)
            pipeline = run_pipeline(plan, uploads, "naive" in sections, "pipeline" in sections)
            results["pipeline"] = {"rows": pipeline["rows"]}
            results["notes"] += pipeline["notes"]
        if "ceiling" in sections and "pipeline" in sections:
            # This shared machine's speed drifts over minutes: measure each
            # runtime's best setting again now, so ratios need not rest on a
            # ceiling taken before a slower or faster spell.
            results["ceiling_after"] = {}
            for runtime, result in results["ceiling"].items():
                summary = ceiling_summary(result)
                if summary is None:
                    continue
                _progress(f"ceiling again, after the pipeline: {runtime}")
                best = summary["best"]
                results["ceiling_after"][runtime] = ceiling.run_child(
                    model_dir / str(version),
                    runtime,
                    duration,
                    warmup,
                    (best["batch"],),
                    retries,
                    Path(scratch) / f"ceiling-after-{runtime}.json",
                    setup=ceiling.Setup(**best["setup"]),
                )
    results["derived"] = derive(results)
    path = write_json(results, args.results_dir, stamp)
    print(render(results, results["derived"]))
    print(f"Results: {path}")
    return 0


def _setting(parser: argparse.ArgumentParser, text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        parser.error(f"--gateway-env wants NAME=VALUE, got {text!r}")
    return name.upper(), value


def _progress(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
