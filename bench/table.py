"""`python -m bench.table`: the README's benchmark table, every model and precision in one run.

For each `--model` folder (its newest version) and each TFLite copy it has
(float32, and int8 when `export_model.py --quantize int8` wrote one), the copy's
ceiling, an embedded gateway serving that copy at c=1 and c=16 with multipart
and raw bodies on the benchmark's 480x360 upload and at c=16 on each real
photograph, and the ceiling again (bench/table_runs.py). Prints the markdown
report and writes the results as JSON to bench/results/tables/<stamp>-table.json (the
processes' logs beside it, in <stamp>-table-logs/), a folder of their own so that
`make bench-compare` and bench/capacity.py, which read bench/results/*.json, never take a
table for a `make bench` run.

The defaults are chosen for the issue's four copies (two models, two
precisions) to finish within about 12 minutes: a copy is 17 measurements (two
ceilings before, 4 upload rows, 2 rows per photograph, one ceiling after) of
1 s warm-up + 4 s, about 100 s with the processes' start-up, so near 7 minutes
in all; the one retry a disturbed measurement may take can stretch that.
"""

import argparse
import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.images import SMALL_SIZE, make_uploads
from bench.machine import describe_machine
from bench.photos import BENCH_PHOTOS, make_photo_uploads, pick_photos
from bench.pipeline import Plan
from bench.report import write_json
from bench.table_report import render
from bench.table_rows import derive
from bench.table_runs import copies_of, measure_copy
from gateway.embedded import newest_version

RESULTS_DIR = Path(__file__).resolve().parent / "results" / "tables"


def build_parser() -> argparse.ArgumentParser:
    """Describe the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__)
    parser.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="a model folder (…/models/<name>), its newest version measured (repeatable)",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each")
    parser.add_argument(
        "--retries",
        type=int,
        default=1,
        help="measure again, up to this many times, while other processes disturb a measurement",
    )
    parser.add_argument(
        "--photos",
        default=",".join(BENCH_PHOTOS),
        metavar="NAMES",
        help="comma-separated library photographs to measure (default: %(default)s)",
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Measure every copy of every model, print the report and write the JSON (bad usage: 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    models: list[tuple[Path, int]] = []
    for folder in args.model:
        try:
            models.append((folder.resolve(), newest_version(folder.resolve())))
        except FileNotFoundError as exc:
            parser.error(f"no model version in {folder} ({exc})")

    started = datetime.now()
    stamp = f"{started.strftime('%Y%m%d-%H%M%S')}-table"
    photos, notes = pick_photos(tuple(name.strip() for name in args.photos.split(",") if name))
    command = ["python", "-m", "bench.table", *(sys.argv[1:] if argv is None else argv)]
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": shlex.join(command),
        "machine": describe_machine(),
        "plan": {
            "models": [f"{folder.name} version {version}" for folder, version in models],
            "upload": f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]} (test/cat.jpg, grained)",
            "photos": [photo.name for photo in photos],
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "retries": args.retries,
        },
        "notes": notes,
        "copies": [],
    }
    upload = make_uploads()["480x360"]
    photo_uploads = make_photo_uploads(photos)
    logs = args.results_dir / f"{stamp}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    _progress(f"process logs in {logs}")
    with tempfile.TemporaryDirectory(prefix="bench-table-") as scratch:
        for folder, version in models:
            copies, skipped = copies_of(folder, version)
            results["notes"] += skipped
            plan = Plan(folder, args.duration, args.warmup, logs, {}, args.retries)
            for copy in copies:
                _progress(f"{folder.name} version {version}, {copy.precision}")
                results["copies"].append(
                    measure_copy(copy, plan, upload, photo_uploads, Path(scratch))
                )
    derived = derive(results["copies"])
    results["derived"] = derived
    path = write_json(results, args.results_dir, stamp)
    print(render(results, derived))
    print(f"Results: {path}")
    return 0


def _progress(what: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
