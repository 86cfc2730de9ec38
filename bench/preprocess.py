"""Decode + resize of one upload: the gateway's `prepare_image` against the naive way.

The naive way decodes every pixel and then resizes with LANCZOS; the gateway
asks the JPEG decoder for a reduced scale first (draft mode) and resizes the
rest as gateway/resize.py describes. The decoder's reduced-scale output alone
is timed too: no preprocessing built on the same decoder can beat it. All run
on one thread, as one request would.
"""

import io
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from bench.images import Upload
from bench.stats import summarise
from gateway.imaging import prepare_image
from modelexport.contract import IMAGE_SIZE

MODEL_INPUT = (IMAGE_SIZE, IMAGE_SIZE)
_MAX_PIXELS = 10**9
_MIN_REPEATS = 3
_MAX_REPEATS = 2_000


def prepare_naively(data: bytes, size: tuple[int, int]) -> Image.Image:
    """Full-resolution decode, then a LANCZOS resize."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").resize(size, Image.Resampling.LANCZOS)


def decode_only(data: bytes, size: tuple[int, int]) -> tuple[int, int]:
    """Decode at the JPEG decoder's reduced scale alone (no orientation, conversion or resize).

    The floor for any decoder built on libjpeg-turbo: even at 1/8 scale every
    Huffman-coded coefficient of the file must be read, so it grows with the
    file's size, not with the pixels kept.
    """
    with Image.open(io.BytesIO(data)) as image:
        image.draft(None, size)
        image.load()
        return image.size


def compare(upload: Upload, duration_s: float) -> dict[str, Any]:
    """Median and p99 milliseconds of each way, each timed for about `duration_s`."""
    gateway = _time(lambda: prepare_image(upload.data, MODEL_INPUT, _MAX_PIXELS), duration_s)
    decode = _time(lambda: decode_only(upload.data, MODEL_INPUT), duration_s)
    naive = _time(lambda: prepare_naively(upload.data, MODEL_INPUT), duration_s)
    return {
        "image": upload.name,
        "image_bytes": len(upload.data),
        "gateway": gateway,
        "decode_only": decode,
        "naive": naive,
        "ratio": gateway["p50_ms"] / naive["p50_ms"],
        "floor_ratio": decode["p50_ms"] / naive["p50_ms"],
    }


def _time(work: Callable[[], object], duration_s: float) -> dict[str, Any]:
    work()  # warm caches and Pillow's lazy plugin loading
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    while len(latencies) < _MAX_REPEATS and (
        len(latencies) < _MIN_REPEATS or time.perf_counter() < deadline
    ):
        began = time.perf_counter()
        work()
        latencies.append((time.perf_counter() - began) * 1000.0)
    measured = summarise(latencies, items=len(latencies), failures=0, elapsed_s=sum(latencies))
    return {"repeats": measured.calls, "p50_ms": measured.p50_ms, "p99_ms": measured.p99_ms}
