"""The ceiling: the exported model alone, called in-process for a fixed time per batch size.

Each runtime is measured in a child process of its own (`python -m bench.ceiling`),
so the runtimes' thread pools stay apart and the benchmark process, which then
runs the load generator, never carries TensorFlow's heap and threads. The child
writes its results as JSON to `--out`.

`precision` picks the TFLite copy: float32 is `model.tflite`, int8 the
full-integer `model_int8.tflite` that `export_model.py --quantize int8` adds
(gateway/runtimes.py, as EMBEDDED_PRECISION picks it); TensorFlow has no int8 copy.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.images import CAT_JPEG
from bench.stats import Measurement, summarise
from bench.watch import DISTURBED_CORES, busy_cpu_seconds
from gateway.imaging import prepare_image
from gateway.library_settings import apply_library_settings
from gateway.runtimes import (
    INT8_TFLITE_FILE,
    TFLITE_FILE,
    LiteRuntime,
    Precision,
    TensorFlowRuntime,
)

RuntimeName = Literal["tensorflow", "tflite"]
BATCHES = (1, 4, 8, 16)
_MAX_CALLS = 200_000
_CHILD_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Setup:
    """How the model is run: LiteRT threads, interpreters, calling threads."""

    runtime: RuntimeName
    # LiteRuntime's thread total: one copy gets them all, several copies share
    # them out; TensorFlow sizes its own pools (0).
    threads: int
    copies: int
    callers: int

    @property
    def label(self) -> str:
        """Short name for tables."""
        callers = f"{self.callers} caller{'s' if self.callers > 1 else ''}"
        if self.runtime == "tensorflow":
            return f"tensorflow, {callers}"
        return f"tflite {self.threads} thr x {self.copies}, {callers}"


SETUPS: dict[RuntimeName, tuple[Setup, ...]] = {
    "tensorflow": (Setup("tensorflow", 0, 1, 1), Setup("tensorflow", 0, 1, 2)),
    "tflite": (
        # The two the embedded gateway switches between (gateway/runtimes.py):
        # all threads for a lone call, one interpreter per overlapping call.
        Setup("tflite", 2, 1, 1),
        Setup("tflite", 1, 2, 2),
    ),
}


def measure_runtime(
    version_dir: Path,
    runtime: RuntimeName,
    batches: tuple[int, ...],
    duration_s: float,
    warmup_s: float,
    retries: int,
    setups: tuple[Setup, ...] | None = None,
    precision: Precision = "float32",
) -> list[dict[str, Any]]:
    """Every setup of `runtime` (or just `setups`) at every batch size; one JSON-ready row each."""
    if precision == "int8" and runtime != "tflite":
        raise ValueError("the int8 copy is a TFLite file: measure it with runtime tflite")
    rows: list[dict[str, Any]] = []
    shared = TensorFlowRuntime(version_dir) if runtime == "tensorflow" else None
    tflite_file = INT8_TFLITE_FILE if precision == "int8" else TFLITE_FILE
    for setup in setups or SETUPS[runtime]:
        model = shared or LiteRuntime(
            version_dir / tflite_file, setup.threads, setup.copies, precision=precision
        )
        width, height = model.tensors.image_size
        pixels = prepare_image(CAT_JPEG.read_bytes(), (width, height), 10**8).pixels
        for batch in batches:
            images = np.ascontiguousarray(np.broadcast_to(pixels, (batch, height, width, 3)))
            _drive(model, images, setup.callers, warmup_s)
            attempts: list[dict[str, Any]] = []
            while len(attempts) <= retries:
                attempts.append(_measure(model, images, setup.callers, duration_s))
                if attempts[-1]["other_load_cores"] <= DISTURBED_CORES:
                    break
            quietest = min(attempts, key=lambda attempt: attempt["other_load_cores"])
            rows.append(
                {
                    "setup": asdict(setup),
                    "label": setup.label,
                    "batch": batch,
                    **quietest,
                    "attempts": len(attempts),
                }
            )
    return rows


def _measure(model: Any, images: np.ndarray, callers: int, duration_s: float) -> dict[str, Any]:
    """One timed run with the CPU it took and what other processes used meanwhile."""
    cpu, busy = time.process_time(), busy_cpu_seconds()
    measured = _drive(model, images, callers, duration_s)
    cpu, busy = time.process_time() - cpu, busy_cpu_seconds() - busy
    return {
        **measured.to_json(),
        # Spinning worker threads count: this is what the model takes from the
        # cores decoding and HTTP would otherwise use.
        "cpu_ms_per_image": cpu * 1000.0 / measured.items,
        "other_load_cores": max(0.0, (busy - cpu) / measured.elapsed_s),
    }


def _drive(model: Any, images: np.ndarray, callers: int, duration_s: float) -> Measurement:
    """Call `model.run(images)` from `callers` threads until `duration_s` has passed."""
    latencies: list[list[float]] = [[] for _ in range(callers)]
    start = threading.Barrier(callers + 1)
    deadline = [0.0]

    def call(into: list[float]) -> None:
        start.wait()
        while time.perf_counter() < deadline[0] and len(into) < _MAX_CALLS // callers:
            began = time.perf_counter()
            model.run(images)
            into.append((time.perf_counter() - began) * 1000.0)
        if not into:  # at least one call, however short the duration
            began = time.perf_counter()
            model.run(images)
            into.append((time.perf_counter() - began) * 1000.0)

    threads = [threading.Thread(target=call, args=(into,)) for into in latencies]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + duration_s
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    merged = [ms for into in latencies for ms in into]
    return summarise(merged, items=len(merged) * images.shape[0], failures=0, elapsed_s=elapsed)


def run_child(
    version_dir: Path,
    runtime: RuntimeName,
    duration_s: float,
    warmup_s: float,
    batches: tuple[int, ...],
    retries: int,
    out: Path,
    setup: Setup | None = None,
    precision: Precision = "float32",
) -> dict[str, Any]:
    """Measure `runtime` (every setup, or one) in a fresh process; its rows, or an `error`."""
    args = [
        sys.executable,
        "-m",
        "bench.ceiling",
        "--version-dir",
        str(version_dir),
        "--runtime",
        runtime,
        "--duration",
        str(duration_s),
        "--warmup",
        str(warmup_s),
        "--batches",
        ",".join(map(str, batches)),
        "--retries",
        str(retries),
        "--out",
        str(out),
    ]
    if setup is not None:
        args += ["--setup", str(SETUPS[runtime].index(setup))]
    if precision != "float32":  # the child's default: the float copy
        args += ["--precision", precision]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            args, cwd=root, env=env, capture_output=True, text=True, timeout=_CHILD_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return {"runtime": runtime, "error": f"timed out after {_CHILD_TIMEOUT_S:.0f} s"}
    if done.returncode != 0 or not out.is_file():
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        return {"runtime": runtime, "error": f"exit status {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main(argv: list[str] | None = None) -> None:
    """Child entry point: measure one runtime and write the rows to --out."""
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--version-dir", type=Path, required=True)
    parser.add_argument("--runtime", choices=tuple(SETUPS), required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--retries", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--setup", type=int, help="only this setup (its index in SETUPS)")
    parser.add_argument("--precision", choices=("float32", "int8"), default="float32")
    args = parser.parse_args(argv)
    batches = tuple(int(part) for part in args.batches.split(","))
    setups = None if args.setup is None else (SETUPS[args.runtime][args.setup],)
    apply_library_settings()  # the input is prepared by the gateway's own pipeline
    loading = time.perf_counter()
    rows = measure_runtime(
        args.version_dir,
        args.runtime,
        batches,
        args.duration,
        args.warmup,
        args.retries,
        setups,
        args.precision,
    )
    result = {
        "runtime": args.runtime,
        "precision": args.precision,
        "rows": rows,
        "seconds": round(time.perf_counter() - loading, 1),
    }
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
