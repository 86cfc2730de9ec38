"""`python -m gateway.cli` as a user runs it, against real gateways (embedded and TF Serving).

Each test starts the CLI as a subprocess from the checkout, with the paths a
user would type, and checks what it prints and how it exits against what the
gateway itself answers to a direct request.
"""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from processes import ROOT, Process, answers, child_env, free_port, gateway

API_KEY = "cli-test-key"
CAT = "test/cat.jpg"
# One embedded gateway with API keys on is enough: the keys are checked before any backend.
KEYED = {"INFERENCE_BACKEND": "embedded", "API_KEYS": API_KEY}


def cli(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI from the checkout; MLPIPE_* come from `env` only, never from this process."""
    environment = {
        name: value for name, value in child_env().items() if not name.startswith("MLPIPE_")
    }
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *argv],
        cwd=ROOT,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def direct_predict(url: str, path: str, **params: int) -> httpx.Response:
    """POST /predict as curl -F would, for the answer the CLI must reproduce."""
    data = (ROOT / path).read_bytes()
    return httpx.post(
        f"{url}/predict", files={"file": (Path(path).name, data)}, params=params, timeout=60
    )


def records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def same_predictions(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> bool:
    """The same classes in the same order, the same scores up to float rounding.

    TF Serving's batching may run the CLI's concurrent images in one batch, and a
    batch's arithmetic differs from a single image's in the last bits.
    """
    return [(p["class_id"], p["label"]) for p in got] == [
        (p["class_id"], p["label"]) for p in expected
    ] and [p["probability"] for p in got] == pytest.approx(
        [p["probability"] for p in expected], rel=1e-4
    )


@pytest.fixture(params=["embedded", "tfserving"])
def served(request: pytest.FixtureRequest) -> Process:
    """Each test runs against the in-process gateway and the one in front of TF Serving."""
    process: Process = request.getfixturevalue(f"{request.param}_gateway")
    return process


@pytest.fixture(scope="module")
def keyed_gateway(model_root: Path, logs: Path) -> Iterator[Process]:
    """An embedded gateway with API keys on."""
    process = gateway(logs / "gateway-cli-keys.log", MODEL_BASE_PATH=str(model_root), **KEYED)
    process.ready = answers(f"{process.url}/health", 200)
    yield process.start()
    process.stop()


def test_a_table_per_image_with_the_model_and_one_untrained_warning(served: Process) -> None:
    run = cli("predict", CAT, "test/photos/rocket.jpg", "--url", served.url, "--top-k", "3")
    assert run.returncode == 0, run.stderr
    expected = direct_predict(served.url, CAT, top_k=3).json()
    blocks = run.stdout.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [CAT, "test/photos/rocket.jpg"]
    rows = [line.split() for line in blocks[0].splitlines()[1:4]]
    assert [(row[0], row[1]) for row in rows] == [
        (str(rank), str(p["class_id"])) for rank, p in enumerate(expected["predictions"], 1)
    ]
    model = expected["model"]
    assert f"model {model['name']} version {model['version']} ({model['backend']})" in blocks[0]
    # The session's model is exported with random weights: said once, on stderr.
    assert run.stderr.count("UNTRAINED") == 1


def test_json_lines_for_a_file_and_a_folder_equal_direct_requests(served: Process) -> None:
    run = cli("predict", CAT, "test/photos", "--json", "--url", served.url, "--concurrency", "3")
    assert run.returncode == 0, run.stderr
    lines = records(run.stdout)
    files = [CAT, "test/photos/camera.png", "test/photos/rocket.jpg"]
    assert [line["file"] for line in lines] == files
    for line, file in zip(lines, files, strict=True):
        assert (line["ok"], line["status"]) == (True, 200)
        assert line["response"]["filename"] == Path(file).name
        direct = direct_predict(served.url, file).json()
        assert same_predictions(line["response"]["predictions"], direct["predictions"])


def test_a_quoted_glob_is_expanded_by_the_cli(served: Process) -> None:
    run = cli("predict", "test/photos/*.jpg", "--json", "--url", served.url)
    assert run.returncode == 0, run.stderr
    assert [line["file"] for line in records(run.stdout)] == ["test/photos/rocket.jpg"]


def test_a_text_file_fails_alone_with_the_gateways_problem_detail(
    served: Process, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not an image\n")
    problem = httpx.post(
        f"{served.url}/predict", files={"file": ("notes.txt", notes.read_bytes())}
    ).json()
    run = cli("predict", CAT, str(notes), "test/photos/rocket.jpg", "--url", served.url)
    assert run.returncode == 1
    line = f"{notes}: {problem['status']} {problem['title']}: {problem['detail']}"
    assert line in run.stderr.splitlines()
    blocks = run.stdout.strip().split("\n\n")
    assert [block.splitlines()[0] for block in blocks] == [CAT, "test/photos/rocket.jpg"]


def test_raw_uploads_answer_as_multipart_does(served: Process) -> None:
    run = cli("predict", CAT, "test/photos/camera.png", "--raw", "--json", "--url", served.url)
    assert run.returncode == 0, run.stderr
    for line in records(run.stdout):
        direct = direct_predict(served.url, line["file"]).json()
        assert same_predictions(line["response"]["predictions"], direct["predictions"])
        assert line["response"]["filename"] == Path(line["file"]).name


def test_health_models_and_metrics(served: Process) -> None:
    health = cli("health", "--url", served.url)
    assert health.returncode == 0, health.stderr
    assert "status: healthy" in health.stdout.splitlines()
    models = cli("models", "--json", "--url", served.url)
    assert models.returncode == 0, models.stderr
    assert json.loads(models.stdout) == httpx.get(f"{served.url}/models").json()
    table = cli("models", "--url", served.url)
    assert "  version 1  AVAILABLE  labels: -  weights: untrained (random)" in table.stdout
    metrics = cli("metrics", "--url", served.url)
    assert metrics.returncode == 0, metrics.stderr
    assert json.loads(metrics.stdout)["model"] == "mobilenet"
    page = cli("metrics", "--prometheus", "--url", served.url)
    assert page.returncode == 0, page.stderr
    assert "# TYPE " in page.stdout


def test_api_keys_from_the_option_or_the_environment(keyed_gateway: Process) -> None:
    url = keyed_gateway.url
    refused = cli("predict", CAT, "--url", url)
    assert refused.returncode == 1
    problem = httpx.post(f"{url}/predict", files={"file": ("cat.jpg", b"x")}).json()
    assert f"{CAT}: 401 {problem['title']}: {problem['detail']}" in refused.stderr
    assert refused.stdout == ""
    assert cli("predict", CAT, "--url", url, "--api-key", API_KEY).returncode == 0
    from_env = cli("predict", CAT, "--json", MLPIPE_URL=url, MLPIPE_API_KEY=API_KEY)
    assert from_env.returncode == 0, from_env.stderr
    assert records(from_env.stdout)[0]["status"] == 200
    assert cli("models", "--url", url).returncode == 1
    assert cli("models", "--url", url, "--api-key", API_KEY).returncode == 0


def test_an_unreachable_gateway_exits_1_saying_what_it_could_not_reach() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    run = cli("predict", CAT, "--url", url)
    assert run.returncode == 1
    assert run.stderr.startswith(f"{CAT}: could not connect to {url}")
    health = cli("health", "--url", url)
    assert health.returncode == 1
    assert health.stderr.startswith(f"/health: could not connect to {url}")
