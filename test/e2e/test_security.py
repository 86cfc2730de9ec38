"""Keys, CORS, what error bodies and logs give away, and decompression bombs.

The guarded gateway has its own double, so faults injected here stay here.
"""

import base64
import io
import re
import statistics
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from api_client import post_image
from peak_rss import PeakRss
from processes import Process, answers, gateway_for, tfserving_double

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


@pytest.fixture(scope="module")
def guarded(
    model_root: Path, logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Process, Process]]:
    """A double, and a gateway with API keys (env and file), CORS for one origin, debug logs."""
    keys_file = tmp_path_factory.mktemp("keys") / "api-keys"
    keys_file.write_text(f"# one key per line\n{FILE_KEY}\n\n")
    double = tfserving_double(model_root / "mobilenet", logs / "security-double.log").start()
    front = gateway_for(
        double,
        model_root,
        logs / "security-gateway.log",
        API_KEYS=",".join(ENV_KEYS),
        API_KEYS_FILE=str(keys_file),
        CORS_ALLOW_ORIGINS=ALLOWED_ORIGIN,
        TF_SERVING_TIMEOUT_SECONDS="1.5",
        MAX_UPLOAD_BYTES="200000",
    )
    # The most talkative level: whatever it logs must still hold no secret.
    front.env["LOG_LEVEL"] = "debug"
    front.ready = answers(f"{front.url}/health", 200)
    front.start()
    yield double, front
    front.stop()
    double.stop()


def call(front: Process, method: str, path: str, data: bytes, **headers: str) -> httpx.Response:
    files = {"file": ("cat.jpg", data)} if method == "POST" else None
    return httpx.request(method, f"{front.url}{path}", files=files, headers=headers, timeout=30)


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
def test_a_missing_or_wrong_key_is_a_401(
    guarded: tuple[Process, Process],
    cat_jpeg: bytes,
    method: str,
    path: str,
    presented: dict[str, str],
) -> None:
    _, front = guarded
    assert_unauthorized(call(front, method, path, cat_jpeg, **presented))


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
def test_a_valid_key_opens_every_endpoint(
    guarded: tuple[Process, Process],
    cat_jpeg: bytes,
    method: str,
    path: str,
    presented: dict[str, str],
) -> None:
    _, front = guarded
    response = call(front, method, path, cat_jpeg, **presented)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] != PROBLEM


@pytest.mark.parametrize("path", OPEN)
def test_probes_and_the_index_need_no_key(guarded: tuple[Process, Process], path: str) -> None:
    _, front = guarded
    assert httpx.get(f"{front.url}{path}").status_code == 200


def test_refused_predictions_are_still_counted(
    guarded: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    _, front = guarded
    key = {"X-API-Key": ENV_KEYS[0]}
    before = httpx.get(f"{front.url}/metrics", headers=key).json()
    for _ in range(3):
        assert_unauthorized(post_image(front.url, cat_jpeg))
    after = httpx.get(f"{front.url}/metrics", headers=key).json()
    assert after["requests_total"] == before["requests_total"] + 3
    unauthorized = after["requests_by_outcome"].get("unauthorized", 0)
    assert unauthorized == before["requests_by_outcome"].get("unauthorized", 0) + 3


def test_cors_is_off_by_default(tfserving_gateway: Process, cat_jpeg: bytes) -> None:
    origin = {"Origin": ALLOWED_ORIGIN}
    simple = httpx.get(f"{tfserving_gateway.url}/health", headers=origin)
    assert "access-control-allow-origin" not in simple.headers
    preflight = httpx.options(
        f"{tfserving_gateway.url}/predict",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_answers_the_configured_origin_only(
    guarded: tuple[Process, Process], cat_jpeg: bytes
) -> None:
    _, front = guarded
    allowed = httpx.get(f"{front.url}/health", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    other = httpx.get(f"{front.url}/health", headers={"Origin": OTHER_ORIGIN})
    assert "access-control-allow-origin" not in other.headers

    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }
    granted = httpx.options(f"{front.url}/predict", headers={"Origin": ALLOWED_ORIGIN, **preflight})
    assert granted.status_code == 200
    assert granted.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in granted.headers["access-control-allow-methods"]
    assert "x-api-key" in granted.headers["access-control-allow-headers"].lower()
    refused = httpx.options(f"{front.url}/predict", headers={"Origin": OTHER_ORIGIN, **preflight})
    assert "access-control-allow-origin" not in refused.headers

    # A browser on the allowed origin can read why it was refused.
    keyless = call(front, "POST", "/predict", cat_jpeg, Origin=ALLOWED_ORIGIN)
    assert_unauthorized(keyless)
    assert keyless.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


def png_bomb(side: int = 50_000) -> bytes:
    """A ~1 KB greyscale PNG whose header declares side x side pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 20, 9)  # the first 20 rows, all black
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def gif_bomb(side: int = 65_535) -> bytes:
    screen = struct.pack("<HHBBB", side, side, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + frame + b";"


def jpeg_bomb(side: int = 50_000) -> bytes:
    frame = struct.pack(">BHHB", 8, side, side, 1) + b"\x01\x11\x00"
    scan = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 64
    return b"\xff\xd8\xff\xc0" + struct.pack(">H", len(frame) + 2) + frame + scan + b"\xff\xd9"


def tiff_bomb(side: int = 50_000) -> bytes:
    strip_at = 8 + 2 + 12 * 8 + 4
    entries = [
        (256, 4, 1, side),  # ImageWidth
        (257, 4, 1, side),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: black is zero
        (273, 4, 1, strip_at),  # StripOffsets
        (278, 4, 1, side),  # RowsPerStrip
        (279, 4, 1, side * side),  # StripByteCounts
    ]
    directory = struct.pack("<H", len(entries))
    directory += b"".join(struct.pack("<HHII", *entry) for entry in entries) + b"\x00" * 4
    return b"II*\x00" + struct.pack("<I", 8) + directory + b"\x00" * 64


def webp_bomb(side: int = 16_383) -> bytes:
    """A lossless WebP of one colour, its header re-declared as side x side (the format's max)."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="WEBP", lossless=True)
    data = bytearray(buffer.getvalue())
    at = data.index(b"VP8L") + 9  # past the chunk header and the 0x2f signature
    (bits,) = struct.unpack("<I", data[at : at + 4])
    bits = (bits & ~((1 << 28) - 1)) | (side - 1) | ((side - 1) << 14)
    data[at : at + 4] = struct.pack("<I", bits)
    return bytes(data)


BOMBS = {
    "PNG": png_bomb,
    "GIF": gif_bomb,
    "JPEG": jpeg_bomb,
    "TIFF": tiff_bomb,
    "WEBP": webp_bomb,
}


@pytest.mark.parametrize("fmt", list(BOMBS))
def test_a_decompression_bomb_is_refused_from_its_header_fast_and_without_memory(
    guarded: tuple[Process, Process], fmt: str
) -> None:
    _, front = guarded
    bomb = BOMBS[fmt]()
    assert len(bomb) < 2048
    key = {"X-API-Key": ENV_KEYS[0]}
    with httpx.Client(base_url=front.url, headers=key, timeout=30) as client:
        client.get("/health/live")  # the connection is open before timing starts
        round_trips = []
        with PeakRss(front) as memory:
            for _ in range(7):
                started = time.perf_counter()
                response = client.post("/predict", files={"file": ("bomb", bomb)})
                round_trips.append(time.perf_counter() - started)
                assert response.status_code == 422, response.text
                assert response.json()["code"] == "too_many_pixels"
    print(
        f"\n{fmt} bomb ({len(bomb)} bytes): median {statistics.median(round_trips) * 1000:.1f} ms, "
        f"peak RSS +{(memory.peak - memory.baseline) / 2**20:.1f} MB"
    )
    assert statistics.median(round_trips) < 0.050
    assert memory.peak - memory.baseline < 50 * 1024 * 1024


def forbidden_fragments(double: Process, model_root: Path) -> list[str]:
    """What an error body must never show: traces, upstream addresses, host paths."""
    rest_port = double.url.rsplit(":", 1)[1]
    grpc_port = double.grpc_target.rsplit(":", 1)[1]
    control_port = double.control_url.rsplit(":", 1)[1]
    return [
        "Traceback",
        'File "',
        "127.0.0.1",
        f":{rest_port}",
        f":{grpc_port}",
        f":{control_port}",
        str(model_root),
        "pytest-of-",
        "site-packages",
    ]


def exif_cut_short_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (9, 7), (10, 20, 30)).save(buffer, format="PNG", exif=b"II*\x00")
    return buffer.getvalue()


def set_faults(double: Process, **faults: object) -> None:
    httpx.put(f"{double.control_url}/faults", json=faults).raise_for_status()


def test_no_error_body_reveals_internals(
    guarded: tuple[Process, Process], model_root: Path, cat_jpeg: bytes
) -> None:
    double, front = guarded
    key = {"X-API-Key": ENV_KEYS[0]}
    url = front.url

    def upload(data: bytes, **extra: str) -> httpx.Response:
        headers = {**key, **extra}
        return httpx.post(f"{url}/predict", files={"file": ("x", data)}, headers=headers)

    cases: list[tuple[str, httpx.Response]] = [
        ("no key", httpx.post(f"{url}/predict", files={"file": ("x", cat_jpeg)})),
        ("wrong key on /model", httpx.get(f"{url}/model", headers={"X-API-Key": WRONG_KEY})),
        ("unknown path", httpx.get(f"{url}/../../etc/passwd", headers=key)),
        ("wrong method", httpx.delete(f"{url}/predict", headers=key)),
        ("empty file", upload(b"")),
        ("text", upload(b"GET / HTTP/1.1\r\n")),
        ("icon", upload(b"\x00\x00\x01\x00" + bytes(60))),
        ("truncated", upload(cat_jpeg[:5000])),
        ("bomb", upload(png_bomb())),
        ("EXIF cut short", upload(exif_cut_short_png())),
        ("too large", upload(bytes(300_000))),
        ("no file field", httpx.post(f"{url}/predict", data={"image": "x"}, headers=key)),
        ("top_k", httpx.post(f"{url}/predict?top_k=0", files={"file": cat_jpeg}, headers=key)),
        ("bad deadline", upload(cat_jpeg, **{"X-Request-Timeout": "soon"})),
        ("deadline", upload(cat_jpeg, **{"X-Request-Timeout": "0.001"})),
        (
            "no boundary",
            httpx.post(
                f"{url}/predict",
                content=b"abc",
                headers={**key, "Content-Type": "multipart/form-data"},
            ),
        ),
    ]
    try:
        set_faults(
            double, error={"status": 500, "message": "Attempting to use uninitialized value"}
        )
        cases.append(("upstream error", upload(cat_jpeg)))
        set_faults(double, delay_ms=3000)
        cases.append(("upstream slow", upload(cat_jpeg)))
        set_faults(double, reset_connections=True)
        cases.append(("upstream reset", upload(cat_jpeg)))
    finally:
        set_faults(double)

    fragments = forbidden_fragments(double, model_root)
    leaks = {
        label: [fragment for fragment in fragments if fragment in response.text]
        for label, response in cases
    }
    assert {label: found for label, found in leaks.items() if found} == {}
    for label, response in cases:
        assert response.status_code >= 400, label
        assert response.headers["content-type"] == PROBLEM, label


LONG_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/=]{120,}")


def test_the_log_never_holds_keys_or_image_bytes(
    guarded: tuple[Process, Process], logs: Path, cat_jpeg: bytes
) -> None:
    _, front = guarded
    presented = [
        {"X-API-Key": ENV_KEYS[0]},
        {"Authorization": f"Bearer {ENV_KEYS[1]}"},
        {"X-API-Key": FILE_KEY},
        {"X-API-Key": WRONG_KEY},
        {"Authorization": f"Bearer {WRONG_KEY}"},
    ]
    uploads = [
        cat_jpeg,
        base64.b64encode(cat_jpeg),
        cat_jpeg[:4000],
        png_bomb(),
        exif_cut_short_png(),
    ]
    for headers in presented:
        for data in uploads:
            httpx.post(f"{front.url}/predict", files={"file": ("f", data)}, headers=headers)
        httpx.get(f"{front.url}/model", headers=headers)
    log = (logs / "security-gateway.log").read_bytes()
    assert log  # debug level: the gateway did write something
    for key in (*ENV_KEYS, FILE_KEY, WRONG_KEY):
        assert key.encode() not in log
    assert b"\xff\xd8\xff" not in log
    assert cat_jpeg[100:132] not in log
    assert cat_jpeg[100:132].hex().encode() not in log
    assert base64.b64encode(cat_jpeg)[:64] not in log
    assert LONG_BASE64_RUN.search(log) is None
