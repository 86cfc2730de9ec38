"""What needs a real gateway: bombs timed and weighed, the process log, upstream faults.

Keys, CORS and the error bodies of everything the app refuses by itself are
tested in-process: test/unit/test_app_security.py. The guarded gateway has its
own double, so faults injected here stay here.
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

from peak_rss import PeakRss
from processes import Process, answers, gateway_for, tfserving_double

ENV_KEYS = ("key-alpha-7f3c9e20", "key-beta-51d2a8c4")
FILE_KEY = "key-file-0c4e93ab"
WRONG_KEY = "wrong-key-3b7e11d0"
ALLOWED_ORIGIN = "https://app.example"
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


def test_no_upstream_failure_reveals_internals(
    guarded: tuple[Process, Process], model_root: Path, cat_jpeg: bytes
) -> None:
    """A real model server failing; whatever the app refuses by itself: test_app_security.py."""
    double, front = guarded

    def upload() -> httpx.Response:
        headers = {"X-API-Key": ENV_KEYS[0]}
        return httpx.post(f"{front.url}/predict", files={"file": ("x", cat_jpeg)}, headers=headers)

    cases: list[tuple[str, httpx.Response]] = []
    try:
        set_faults(
            double, error={"status": 500, "message": "Attempting to use uninitialized value"}
        )
        cases.append(("upstream error", upload()))
        set_faults(double, delay_ms=3000)
        cases.append(("upstream slow", upload()))
        set_faults(double, reset_connections=True)
        cases.append(("upstream reset", upload()))
    finally:
        set_faults(double)

    fragments = forbidden_fragments(double, model_root)
    leaks = {
        label: [fragment for fragment in fragments if fragment in response.text]
        for label, response in cases
    }
    assert {label: found for label, found in leaks.items() if found} == {}
    for label, response in cases:
        assert response.status_code >= 500, label
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
