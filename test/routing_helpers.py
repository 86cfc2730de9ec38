"""What the routing, canary and rollout checks share: model configs, versions, load, metrics.

The end-to-end tests in test/e2e/test_model_routing_tfserving.py,
test_canary_split.py and test_rollout_under_load.py, and the demonstration
bench/rollout_demo.py, all serve several versions from one TF Serving model
config file, change it while traffic flows, and read the answers and the
gateway's shadow metrics. One copy of each of those steps lives here.
"""

from __future__ import annotations

import math
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from google.protobuf import text_format
from prometheus_client.parser import text_string_to_metric_families

from gateway.tfserving.protos.model_server_config_pb2 import ModelServerConfig
from processes import Process, answers, gateway_for, tfserving_double, wait_until

MOBILENET = "mobilenet"
# TF Serving's poll flags are int32 seconds: 1 is as fast as the double can follow a file.
TFS_POLL_SECONDS = "1"
L1 = "gateway_shadow_l1_distance"


@dataclass(frozen=True)
class ServedModel:
    """One `config { ... }` entry of a ModelServerConfig."""

    name: str
    base_path: Path
    versions: Sequence[int] = ()  # empty: TF Serving's default policy, the latest version
    labels: Mapping[str, int] = field(default_factory=dict)


def model_config_text(*models: ServedModel) -> str:
    """Text-format ModelServerConfig, as --model_config_file and MODEL_CONFIG_FILE read it."""
    config = ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = str(model.base_path)
        entry.model_platform = "tensorflow"
        if model.versions:
            entry.model_version_policy.specific.versions.extend(model.versions)
        for label, version in model.labels.items():
            entry.version_labels[label] = version
    text: str = text_format.MessageToString(config)
    return text


def write_config(path: Path, *models: ServedModel) -> None:
    """Replace the config file whole (temp file + rename): a poller never reads half of it."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(model_config_text(*models), encoding="utf-8")
    os.replace(staging, path)


def publish_version(source: Path, model_dir: Path, version: int) -> Path:
    """Copy a version folder under a temporary name, then rename it, as export_model.py does.

    TF Serving only looks at all-digit folder names, so the half-copied one is never seen.
    """
    staging = model_dir / f".tmp-{version}"
    shutil.copytree(source, staging)
    target = model_dir / str(version)
    staging.rename(target)
    return target


def start_served(
    model_dir: Path, config: Path, log_dir: Path, name: str, **gateway_env: str
) -> tuple[Process, Process]:
    """The double reading `config` every second, and a gateway in front reading it too.

    The double gets --allow_version_labels_for_unavailable_models, as compose
    passes it: TF Serving checks the first config's labels before anything has
    loaded, so without it a config with labels refuses to start
    (TFS/model_servers/server_core.cc, UpdateModelVersionLabelMap).
    """
    double = tfserving_double(
        model_dir,
        log_dir / f"{name}-double.log",
        model_config_file=str(config),
        model_config_file_poll_wait_seconds=TFS_POLL_SECONDS,
        allow_version_labels_for_unavailable_models="true",
    ).start()
    try:
        front = gateway_for(
            double,
            model_dir.parent,
            log_dir / f"{name}-gateway.log",
            MODEL_CONFIG_FILE=str(config),
            MODEL_CONFIG_POLL_SECONDS="0.2",
            STATUS_POLL_SECONDS="0.2",
            **gateway_env,
        )
        # Liveness: readiness may rightly be 503 (a broken version fails its golden check).
        front.ready = answers(f"{front.url}/health/live", 200)
        front.start()
    except BaseException:
        double.stop()
        raise
    return double, front


def version_states(client: httpx.Client) -> dict[tuple[str, int], str]:
    """(model, version) -> state, as the gateway's /models lists them."""
    body = client.get("/models").json()
    return {
        (model["name"], version["version"]): version["state"]
        for model in body["models"]
        for version in model["versions"]
    }


def wait_for_states(
    client: httpx.Client, expected: Mapping[tuple[str, int], str], timeout: float = 90.0
) -> None:
    """Wait until /models lists exactly these versions in these states."""
    last: dict[tuple[str, int], str] = {}

    def listed() -> bool:
        last.clear()
        last.update(version_states(client))
        return last == dict(expected)

    try:
        wait_until(listed, timeout=timeout, what=f"/models to list {dict(expected)}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last listed: {last}") from None


def serves_only(client: httpx.Client, model: str, version: int) -> bool:
    """`version` is AVAILABLE and every other version of `model` has gone.

    TF Serving keeps listing an unloaded version, as END, for as long as it runs.
    """
    states = {v: s for (m, v), s in version_states(client).items() if m == model}
    return states.pop(version, None) == "AVAILABLE" and set(states.values()) <= {"END"}


@dataclass(frozen=True)
class Answer:
    """One request a load client made: what it asked, when, and who answered."""

    asked: str  # "split", or the label it named
    started: float
    finished: float
    status: int
    version: int | None
    chosen_by: str
    detail: str = ""
    label: str = ""  # the label the response says routed it


def predict(client: httpx.Client, image: bytes, **params: str | int) -> httpx.Response:
    """POST one image to the gateway's /predict through a keep-alive client."""
    return client.post("/predict", params=params, files={"file": ("cat.jpg", image)})


def answer_of(asked: str, started: float, response: httpx.Response) -> Answer:
    """What an /predict response says about who answered it."""
    finished = time.monotonic()
    if response.status_code != 200:
        return Answer(asked, started, finished, response.status_code, None, "", response.text)
    body = response.json()
    version = int(body["model"]["version"])
    if response.headers.get("X-Model-Version") != str(version):
        detail = f"X-Model-Version {response.headers.get('X-Model-Version')} != body {version}"
        return Answer(asked, started, finished, 599, version, "", detail)
    chosen_by = body["routing"]["chosen_by"]
    label = body["model"].get("label", "")
    return Answer(asked, started, finished, 200, version, chosen_by, label=label)


class LoadClients:
    """Threads posting the image continuously, each with its own keep-alive client.

    Client `i` asks for `mix[j % len(mix)]` on its `j`-th request: "split" sends
    no version or label (the routing file's split picks), anything else is sent
    as `?label=`. Use it as a context manager; `answers` holds every request.
    """

    def __init__(
        self,
        url: str,
        image: bytes,
        clients: int,
        mix: Sequence[str],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._url = url
        self._image = image
        self._mix = list(mix)
        self._headers = dict(headers or {})
        self._stop = threading.Event()
        self._done = threading.Condition()
        self.answers: list[Answer] = []
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}") for i in range(clients)
        ]

    def __enter__(self) -> LoadClients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def wait_for(self, check: Callable[[list[Answer]], bool], timeout: float = 60.0) -> None:
        """Block until `check(answers)` holds (evaluated after every answer)."""
        with self._done:
            if not self._done.wait_for(lambda: check(self.answers), timeout=timeout):
                raise AssertionError(f"load: condition not met within {timeout} s")

    def answered_after(self, moment: float, count: int, timeout: float = 60.0) -> None:
        """Block until `count` requests started after `moment` have been answered."""
        self.wait_for(lambda seen: sum(a.started > moment for a in seen) >= count, timeout)

    def _run(self, index: int) -> None:
        with httpx.Client(base_url=self._url, headers=self._headers, timeout=60) as client:
            step = index  # the clients start at different places of the mix
            while not self._stop.is_set():
                asked = self._mix[step % len(self._mix)]
                step += 1
                params = {} if asked == "split" else {"label": asked}
                started = time.monotonic()
                try:
                    answer = answer_of(asked, started, predict(client, self._image, **params))
                except httpx.HTTPError as exc:
                    answer = Answer(asked, started, time.monotonic(), 0, None, "", repr(exc))
                with self._done:
                    self.answers.append(answer)
                    self._done.notify_all()


def sample_values(metrics_text: str, sample_name: str) -> Iterator[tuple[dict[str, str], float]]:
    """Every sample named `sample_name` in a Prometheus exposition: (labels, value)."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == sample_name:
                yield sample.labels, sample.value


@dataclass(frozen=True)
class ShadowFigures:
    """The gateway's shadow comparisons against one shadow version."""

    agree: int
    disagree: int
    l1_count: int
    l1_sum: float
    l1_buckets: list[tuple[float, float]]  # (upper bound, cumulative count), as exposed

    def l1_quantile(self, q: float) -> float:
        """The q-quantile of the L1 distance, interpolated in its bucket as PromQL's
        histogram_quantile does (so it is the dashboard's figure, not the exact one)."""
        if self.l1_count == 0:
            return math.nan
        rank = q * self.l1_count
        lower, below = 0.0, 0.0
        for upper, cumulative in self.l1_buckets:
            if cumulative >= rank:
                if math.isinf(upper):
                    return lower
                inside = cumulative - below
                return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
            lower, below = upper, cumulative
        return lower


def shadow_figures(metrics_text: str, model: str, shadow_version: int) -> ShadowFigures:
    """Shadow comparisons of `model` against `shadow_version`, summed over primary versions."""

    def ours(labels: dict[str, str]) -> bool:
        return labels.get("model") == model and labels.get("shadow_version") == str(shadow_version)

    agree = disagree = 0
    for labels, value in sample_values(metrics_text, "gateway_shadow_comparisons_total"):
        if ours(labels):
            if labels["top1"] == "agree":
                agree += int(value)
            else:
                disagree += int(value)
    buckets: dict[float, float] = {}
    for labels, value in sample_values(metrics_text, f"{L1}_bucket"):
        if ours(labels):
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
    count = sum(v for lb, v in sample_values(metrics_text, f"{L1}_count") if ours(lb))
    total = sum(v for lb, v in sample_values(metrics_text, f"{L1}_sum") if ours(lb))
    return ShadowFigures(agree, disagree, int(count), total, sorted(buckets.items()))


def metrics_text(client: httpx.Client) -> str:
    """The gateway's Prometheus exposition."""
    response = client.get("/metrics/prometheus")
    response.raise_for_status()
    return response.text


def summary(body: dict[str, Any]) -> list[str]:
    """/models as lines of text: each model, its versions, states and labels."""
    lines = []
    for model in body["models"]:
        lines.append(f"{model['name']}  policy {model['version_policy']}  labels {model['labels']}")
        for version in model["versions"]:
            signature = version.get("signature") or {}
            outputs = ", ".join(
                f"{name} {spec['shape']}" for name, spec in signature.get("outputs", {}).items()
            )
            labels = ",".join(version["labels"]) or "-"
            lines.append(
                f"  version {version['version']}: {version['state']}, labels {labels}, "
                f"weights {version['weights']} ({version['weights_source']}), outputs {outputs}"
            )
    return lines


def post_many(
    url: str,
    image: bytes,
    requests: Sequence[Mapping[str, str]],
    threads: int = 3,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str | int] | None = None,
) -> list[Answer]:
    """Send one /predict per entry of `requests` (its extra headers), `threads` at a time.

    Each thread keeps one connection open: a new TCP connection per request would
    cost more than the model on this machine. Answers come back in request order.
    """
    found: list[Answer | None] = [None] * len(requests)

    def run(start: int) -> None:
        with httpx.Client(base_url=url, headers=dict(headers or {}), timeout=60) as client:
            for index in range(start, len(requests), threads):
                started = time.monotonic()
                response = client.post(
                    "/predict",
                    params=dict(params or {}),
                    headers=dict(requests[index]),
                    files={"file": ("cat.jpg", image)},
                )
                found[index] = answer_of("split", started, response)

    workers = [threading.Thread(target=run, args=(start,)) for start in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    missing = [i for i, answer in enumerate(found) if answer is None]
    assert not missing, f"requests {missing[:5]} got no answer (a client thread failed)"
    return [answer for answer in found if answer is not None]


def shadow_accounted(client: httpx.Client, model: str, shadow_version: int) -> float:
    """Shadow copies that have ended: compared against `shadow_version`, or skipped (any reason).

    Every copy the gateway decides to make ends as one or the other, so a caller
    that knows how many copies its requests asked for can wait for this to grow by
    that much instead of guessing how long the background calls take.
    """
    text = metrics_text(client)
    figures = shadow_figures(text, model, shadow_version)
    skipped = sum(
        value
        for labels, value in sample_values(text, "gateway_shadow_skipped_total")
        if labels.get("model") == model
    )
    return figures.agree + figures.disagree + skipped
