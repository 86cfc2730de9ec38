"""API keys, CORS, and what error bodies give away: the real app in-process.

What needs the real process stays in test/e2e/test_security.py: decompression
bombs timed and weighed in RSS, the process log, and upstream faults of a real
model server.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api_client import in_process, post_image_in_process
from fake_backend import FakeBackend, fake_settings, write_model_files
from gateway.errors import BackendError, BackendTimeout, BackendUnavailable
from test_security import exif_cut_short_png, png_bomb  # the e2e module weighs these bombs

ENV_KEYS = ("key-alpha-7f3c9e20", "key-beta-51d2a8c4")
FILE_KEY = "key-file-0c4e93ab"
WRONG_KEY = "wrong-key-3b7e11d0"
ALLOWED_ORIGIN = "https://app.example"
OTHER_ORIGIN = "https://evil.example"
PROTECTED = [
    ("POST", "/predict"),
    ("GET", "/metrics"),
    ("GET", "/metrics/prometheus"),
    ("GET", "/model"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
]
OPEN = ["/", "/health", "/health/live", "/health/ready"]
PROBLEM = "application/problem+json"
KEY = {"X-API-Key": ENV_KEYS[0]}
# Where the gateway believes TF Serving is: no error body may name it.
UPSTREAM_HOST = "10.0.0.7"
UPSTREAM_URL = f"http://{UPSTREAM_HOST}:8501/v1/models/mobilenet:predict"

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_files(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
async def guarded(
    model_files: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with API keys (env and file), CORS for one origin, a 200,000-byte upload cap."""
    keys_file = tmp_path_factory.mktemp("keys") / "api-keys"
    keys_file.write_text(f"# one key per line\n{FILE_KEY}\n\n")
    settings = fake_settings(
        model_files,
        api_keys=",".join(ENV_KEYS),
        api_keys_file=keys_file,
        cors_allow_origins=ALLOWED_ORIGIN,
        max_upload_bytes=200_000,
        tf_serving_url=UPSTREAM_URL,
    )
    async with in_process(settings, FakeBackend()) as client:
        yield client


async def call(
    client: httpx.AsyncClient, method: str, path: str, data: bytes, **headers: str
) -> httpx.Response:
    files = {"file": ("cat.jpg", data)} if method == "POST" else None
    return await client.request(method, path, files=files, headers=headers)


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "presented",
    [
        {},
        {"X-API-Key": WRONG_KEY},
        {"X-API-Key": ""},
        {"X-API-Key": ENV_KEYS[0].upper()},
        {"X-API-Key": ENV_KEYS[0][:-1]},
        {"X-API-Key": ENV_KEYS[0] + "x"},
        {"X-API-Key": f"{ENV_KEYS[0]},{WRONG_KEY}"},
        {"Authorization": f"Bearer {WRONG_KEY}"},
        {"Authorization": f"Basic {ENV_KEYS[0]}"},
        {"Authorization": ENV_KEYS[0]},
        {"Authorization": "Bearer"},
        {"X-API-Key": "# one key per line"},
    ],
    ids=lambda presented: "-".join(f"{k}={v}" for k, v in presented.items()) or "none",
)
async def test_a_missing_or_wrong_key_is_a_401(
    guarded: httpx.AsyncClient,
    cat_jpeg: bytes,
    method: str,
    path: str,
    presented: dict[str, str],
) -> None:
    assert_unauthorized(await call(guarded, method, path, cat_jpeg, **presented))


@pytest.mark.parametrize(
    "presented",
    [
        {"X-API-Key": ENV_KEYS[0]},
        {"X-API-Key": ENV_KEYS[1]},
        {"X-API-Key": FILE_KEY},
        {"Authorization": f"Bearer {ENV_KEYS[1]}"},
        {"Authorization": f"bearer {FILE_KEY}"},
    ],
    ids=lambda presented: "-".join(presented),
)
@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_a_valid_key_opens_every_endpoint(
    guarded: httpx.AsyncClient,
    cat_jpeg: bytes,
    method: str,
    path: str,
    presented: dict[str, str],
) -> None:
    response = await call(guarded, method, path, cat_jpeg, **presented)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] != PROBLEM


@pytest.mark.parametrize("path", OPEN)
async def test_probes_and_the_index_need_no_key(guarded: httpx.AsyncClient, path: str) -> None:
    assert (await guarded.get(path)).status_code == 200


async def test_refused_predictions_are_still_counted(
    guarded: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    before = (await guarded.get("/metrics", headers=KEY)).json()
    for _ in range(3):
        assert_unauthorized(await post_image_in_process(guarded, cat_jpeg))
    after = (await guarded.get("/metrics", headers=KEY)).json()
    assert after["requests_total"] == before["requests_total"] + 3
    unauthorized = after["requests_by_outcome"].get("unauthorized", 0)
    assert unauthorized == before["requests_by_outcome"].get("unauthorized", 0) + 3


async def test_cors_is_off_by_default(model_files: Path) -> None:
    origin = {"Origin": ALLOWED_ORIGIN}
    async with in_process(fake_settings(model_files), FakeBackend()) as client:
        simple = await client.get("/health", headers=origin)
        preflight = await client.options(
            "/predict", headers={**origin, "Access-Control-Request-Method": "POST"}
        )
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers
    assert "access-control-allow-origin" not in preflight.headers


async def test_cors_answers_the_configured_origin_only(
    guarded: httpx.AsyncClient, cat_jpeg: bytes
) -> None:
    allowed = await guarded.get("/health", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = await guarded.get("/health", headers={"Origin": OTHER_ORIGIN})
    assert "access-control-allow-origin" not in other.headers

    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    granted = await guarded.options("/predict", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in granted.headers["access-control-allow-methods"]
    assert "x-api-key" in granted.headers["access-control-allow-headers"].lower()
    refused = await guarded.options("/predict", headers={"Origin": OTHER_ORIGIN, **preflight})
    assert "access-control-allow-origin" not in refused.headers

    # A browser on the allowed origin can read why it was refused.
    keyless = await call(guarded, "POST", "/predict", cat_jpeg, Origin=ALLOWED_ORIGIN)
    assert_unauthorized(keyless)
    assert keyless.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def forbidden_fragments(model_root: Path) -> list[str]:
    """What an error body must never show: traces, upstream addresses, host paths."""
    return [
        "Traceback",
        'File "',
        UPSTREAM_HOST,
        ":8501",
        str(model_root),
        "pytest-of-",
        "site-packages",
    ]


async def test_no_error_body_reveals_internals(
    guarded: httpx.AsyncClient, model_files: Path, cat_jpeg: bytes
) -> None:
    """Every refusal the app makes itself; upstream failures: test/e2e/test_security.py."""

    async def upload(data: bytes, **extra: str) -> httpx.Response:
        return await guarded.post("/predict", files={"file": ("x", data)}, headers={**KEY, **extra})

    cases: list[tuple[str, httpx.Response]] = [
        ("no key", await post_image_in_process(guarded, cat_jpeg)),
        ("wrong key on /model", await guarded.get("/model", headers={"X-API-Key": WRONG_KEY})),
        ("unknown path", await guarded.get("/../../etc/passwd", headers=KEY)),
        ("wrong method", await guarded.delete("/predict", headers=KEY)),
        ("empty file", await upload(b"")),
        ("text", await upload(b"GET / HTTP/1.1\r\n")),
        ("icon", await upload(b"\x00\x00\x01\x00" + bytes(60))),
        ("truncated", await upload(cat_jpeg[:5000])),
        ("bomb", await upload(png_bomb())),
        ("EXIF cut short", await upload(exif_cut_short_png())),
        ("too large", await upload(bytes(300_000))),
        ("no file field", await guarded.post("/predict", data={"image": "x"}, headers=KEY)),
        ("top_k", await guarded.post("/predict?top_k=0", files={"file": cat_jpeg}, headers=KEY)),
        ("bad deadline", await upload(cat_jpeg, **{"X-Request-Timeout": "soon"})),
        ("deadline", await upload(cat_jpeg, **{"X-Request-Timeout": "0.001"})),
        (
            "no boundary",
            await guarded.post(
                "/predict",
                content=b"abc",
                headers={**KEY, "Content-Type": "multipart/form-data"},
            ),
        ),
    ]
    fragments = forbidden_fragments(model_files)
    leaks = {
        label: [fragment for fragment in fragments if fragment in response.text]
        for label, response in cases
    }
    assert {label: found for label, found in leaks.items() if found} == {}
    for label, response in cases:
        assert response.status_code >= 400, label
        assert response.headers["content-type"] == PROBLEM, label


@pytest.mark.parametrize(
    "error",
    [
        BackendUnavailable("TF Serving is not reachable"),
        BackendTimeout("TF Serving did not answer in time"),
        BackendError("TF Serving answered 500"),
        RuntimeError(f'Traceback:\n  File "/srv/models/mobilenet/1", {UPSTREAM_URL}'),
    ],
    ids=lambda error: type(error).__name__,
)
async def test_a_failing_backend_reveals_nothing_either(
    model_files: Path, cat_jpeg: bytes, error: Exception
) -> None:
    settings = fake_settings(model_files, tf_serving_url=UPSTREAM_URL)
    async with in_process(settings, FakeBackend(error=error)) as client:
        response = await post_image_in_process(client, cat_jpeg)
    assert response.status_code >= 500
    assert response.headers["content-type"] == PROBLEM
    leaked = [f for f in [*forbidden_fragments(model_files), "/srv/"] if f in response.text]
    assert leaked == []
