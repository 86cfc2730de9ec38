"""`make demo-rollout`: two models, three versions served, a fourth rolled out.

One command that shows, with real processes and real exports, what
docs/rollouts.md describes: the TF Serving double and a gateway read one model
config file serving mobilenet versions 1 to 3 and efficientnet_lite0; a 90/10
canary split is measured over 1,000 requests; shadow copies are compared with an
identical-architecture retrain and with a broken export (version 3); readiness
names the broken version; and version 4, exported outside the version policy, is
rolled out by labels while clients keep posting. It prints plain text, fit for a
closing note.

The versions are written by export_model.py with random weights (`--seed`
differs, so versions answer differently) and `--no-tflite` (TF Serving needs
no TensorFlow Lite copy); EfficientNet-Lite0 has its real ImageNet weights.
Processes are started with the helpers the end-to-end tests use.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

# bench.harness puts test/ on sys.path; it sorts (and so is imported) before routing_helpers.
from bench.harness import ROOT, child_env
from bench.images import CAT_JPEG
from routing_helpers import (
    MOBILENET,
    LoadClients,
    ServedModel,
    metrics_text,
    post_many,
    serves_only,
    shadow_accounted,
    shadow_figures,
    start_served,
    summary,
    version_states,
    wait_for_states,
    wait_until,
    write_config,
)

LITE = "efficientnet_lite0"
API_KEY = "rollout-demo-key"
REQUESTS = 1000
SHADOW_REQUESTS = 200
# Per load client, in turn: mostly the split, each label by name now and then.
MIX = ("split", "split", "stable", "split", "canary")
# (version, export_model.py arguments); version 3 is version 1's twin, broken.
EXPORTS = (
    (1, ["--seed", "42"]),
    (2, ["--seed", "7"]),
    (3, ["--seed", "42", "--fault", "broken-preprocessing"]),
    (4, ["--seed", "11"]),  # outside the version policy until the rollout adds it
)


def say(text: str = "") -> None:
    print(text, flush=True)


def export(models: Path, *args: str) -> float:
    """Run export_model.py as a user would; the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "export_model.py", "--model-dir", str(models), "--no-tflite", *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"export_model.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.monotonic() - started


def routing(canary_weight: int, shadow: dict[str, Any] | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {
        "split": [
            {"label": "stable", "weight": 100 - canary_weight},
            {"label": "canary", "weight": canary_weight},
        ]
    }
    if shadow is not None:
        model["shadow"] = shadow
    return {"models": {MOBILENET: model}}


def mobilenet(models: Path, versions: tuple[int, ...], stable: int, canary: int) -> ServedModel:
    return ServedModel(
        MOBILENET, models / MOBILENET, versions, {"stable": stable, "canary": canary}
    )


def measure_split(client: httpx.Client, url: str, image: bytes) -> None:
    answers = post_many(url, image, [{}] * REQUESTS, threads=3, headers=client.headers)
    counts = Counter((a.version, a.label) for a in answers if a.status == 200)
    failed = sum(a.status != 200 for a in answers)
    say(f"3. Canary split 90/10 (stable=1, canary=2), {REQUESTS} requests, no client key")
    for (version, label), count in sorted(counts.items(), key=lambda item: str(item[0])):
        say(f"   version {version} ({label}): {count}")
    share = counts[(2, "canary")] / REQUESTS * 100
    say(f"   canary share {share:.1f} % (expected 10 +- 2.8 at 3 binomial sigmas); failed {failed}")


def measure_shadow(client: httpx.Client, url: str, image: bytes) -> None:
    say(f"4. Shadow traffic, fraction 1.0, {SHADOW_REQUESTS} requests each (split still 90/10)")
    shadow_case(client, url, image, {"label": "canary"}, 2, "canary, seed 7")
    shadow_case(client, url, image, {"version": 3}, 3, "broken export")
    client.put("/admin/routing", json=routing(10))


def shadow_case(
    client: httpx.Client, url: str, image: bytes, target: dict[str, Any], version: int, name: str
) -> None:
    """Shadow every request to `target` (answered by `version`) and print the comparisons."""
    client.put("/admin/routing", json=routing(10, {**target, "fraction": 1.0}))
    before = shadow_accounted(client, MOBILENET, version)
    answers = post_many(url, image, [{}] * SHADOW_REQUESTS, threads=2, headers=client.headers)
    copies = sum(a.version != version for a in answers)  # answered by it: not shadowed
    wait_until(
        lambda: shadow_accounted(client, MOBILENET, version) - before >= copies,
        what="every shadow copy compared or skipped",
    )
    f = shadow_figures(metrics_text(client), MOBILENET, version)
    say(
        f"   shadow to version {version} ({name}): {copies} copies; top-1 agree {f.agree}, "
        f"disagree {f.disagree}; L1 median {f.l1_quantile(0.5):.4f}, "
        f"p99 {f.l1_quantile(0.99):.4f} (histogram buckets), "
        f"mean {f.l1_sum / max(f.l1_count, 1):.4f}"
    )


def show_readiness(client: httpx.Client, config: Path, models: Path) -> None:
    say("5. Readiness with the broken version 3 served")
    wait_until(lambda: client.get("/health").status_code == 503, 90, "readiness to fail")
    response = client.get("/health")
    say(f"   GET /health -> {response.status_code}: {response.json().get('error')}")
    write_config(config, mobilenet(models, (1, 2), 1, 2), ServedModel(LITE, models / LITE))
    wait_until(lambda: client.get("/health").status_code == 200, 90, "readiness back")
    say("   version 3 dropped from the policy -> GET /health 200")


def roll_out(client: httpx.Client, url: str, config: Path, models: Path, image: bytes) -> None:
    """Add version 4, move canary then stable onto it, drop 1 and 2, with clients posting."""
    lite = ServedModel(LITE, models / LITE)
    say("6. Rollout of version 4 (seed 11) by labels, under load from 3 clients")
    steps: dict[str, float] = {"start": time.monotonic()}
    with LoadClients(url, image, 3, MIX, headers=client.headers) as load:
        load.answered_after(0.0, 20)
        write_config(config, mobilenet(models, (1, 2, 4), 1, 2), lite)
        wait_until(lambda: version_states(client).get((MOBILENET, 4)) == "AVAILABLE", 90)
        steps["version 4 added to the policy: AVAILABLE"] = time.monotonic()
        write_config(config, mobilenet(models, (1, 2, 4), 1, 4), lite)
        load.wait_for(lambda seen: any(a.asked == "canary" and a.version == 4 for a in seen))
        steps["canary label moved to 4: answered by 4"] = time.monotonic()
        stable_moved = time.monotonic()
        write_config(config, mobilenet(models, (1, 2, 4), 4, 4), lite)
        load.wait_for(lambda seen: any(a.asked == "stable" and a.version == 4 for a in seen))
        steps["stable label moved to 4: answered by 4"] = time.monotonic()
        write_config(config, mobilenet(models, (4,), 4, 4), lite)
        wait_until(lambda: serves_only(client, MOBILENET, 4), 90, "versions 1 and 2 unloaded")
        for old in (1, 2):
            shutil.rmtree(models / MOBILENET / str(old))
        end = steps["versions 1 and 2 out of the policy, folders deleted"] = time.monotonic()
        load.answered_after(end, 30)
    answers = load.answers
    for name, moment in list(steps.items())[1:]:
        say(f"   +{moment - steps['start']:5.1f} s  {name}")
    failed = [a for a in answers if a.status != 200]
    say(f"   requests {len(answers)}, failed {len(failed)}")
    for asked in ("split", "stable", "canary"):
        seen = Counter(a.version for a in answers if a.asked == asked)
        say(f"   {asked:>6}: answers by version {dict(sorted(seen.items()))}")
    early = Counter(a.version for a in answers if a.asked == "stable" and a.finished < stable_moved)
    say(f"   ?label=stable answered before the stable move was written: {dict(early)}")
    after = Counter(a.version for a in answers if a.started > end)
    say(f"   requests started after the last step: {dict(after)}")
    for a in failed[:3]:
        say(f"   failure: {a.status} {a.detail[:200]}")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="rollout-demo-"))
    models, logs = work / "models", work / "logs"
    logs.mkdir(parents=True)
    image = CAT_JPEG.read_bytes()
    say("Rollout demonstration: TF Serving double + gateway (gRPC), one models.config")
    say("1. Exports (export_model.py, random weights unless said)")
    for version, args in EXPORTS:
        seconds = export(models, "--source", "random", "--version", str(version), *args)
        say(f"   mobilenet {version}: {' '.join(args)} ({seconds:.0f} s)")
    seconds = export(models, "--source", "efficientnet-lite0")
    say(f"   {LITE} 1: ImageNet weights ({seconds:.0f} s)")
    config, routing_file = work / "models.config", work / "routing.json"
    write_config(config, mobilenet(models, (1, 2, 3), 1, 2), ServedModel(LITE, models / LITE))
    routing_file.write_text(json.dumps(routing(10)), encoding="utf-8")
    double, front = start_served(
        models / MOBILENET,
        config,
        logs,
        "demo",
        API_KEYS=API_KEY,
        ROUTING_FILE=str(routing_file),
        GOLDEN_CHECK_SECONDS="1",
    )
    try:
        with httpx.Client(base_url=front.url, headers={"X-API-Key": API_KEY}, timeout=60) as c:
            every = {(MOBILENET, v): "AVAILABLE" for v in (1, 2, 3)} | {(LITE, 1): "AVAILABLE"}
            wait_for_states(c, every)
            say("2. GET /models")
            for line in summary(c.get("/models").json()):
                say(f"   {line}")
            measure_split(c, front.url, image)
            measure_shadow(c, front.url, image)
            show_readiness(c, config, models)
            roll_out(c, front.url, config, models, image)
    except BaseException:
        say(f"(logs kept in {logs})")
        raise
    finally:
        front.stop()
        double.stop()
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
