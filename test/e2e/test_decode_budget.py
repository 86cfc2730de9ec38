"""The decode estimate bounds what a decode really takes; the budget admits decodes fairly.

Each estimate is checked against the peak resident memory that `prepare_image`
adds in a fresh interpreter, for every format and the colour modes that cost
the most: alpha, 16-bit and 32-bit greys, palettes, progressive JPEG, single
strip and large-tile TIFF, WebP. `pytest -s` prints the table.
"""

import asyncio
import io
import json
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gateway.decode_budget import MIB, DecodeBudget
from gateway.imaging import inspect_image
from processes import ROOT, child_env

SIZE = (224, 224)
SIDE = 3000  # 9 MP: large enough for the pixels to dominate what the process adds

# Runs in a fresh interpreter: warm up on a small file of the same kind (plugin
# imports, first allocations), reset the peak, then decode the large one.
MEASURE = """
import json, sys
from gateway.imaging import prepare_image
from gateway.library_settings import apply_library_settings

apply_library_settings()  # as the gateway does when it starts

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

small, large = (open(path, "rb").read() for path in sys.argv[1:3])
prepare_image(small, (224, 224), 10**9)
with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # VmHWM starts again from the current RSS
before = status("VmRSS")
prepare_image(large, (224, 224), 10**9)
print(json.dumps({"peak": status("VmHWM") - before}))
"""


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def grey(side: int) -> np.ndarray:
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    return ((ramp[None, :] + ramp[:, None]) / 2).astype(np.uint8)


def rgb(side: int) -> Image.Image:
    values = grey(side)
    return Image.fromarray(np.dstack([values, values[::-1], np.full_like(values, 90)]))


def rgba(side: int) -> Image.Image:
    image = rgb(side)
    image.putalpha(Image.fromarray(grey(side)[:, ::-1]))
    return image


def rotated_exif() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned a quarter: the decoder transposes a full copy
    return exif.tobytes()


def large_tile_tiff(side: int) -> bytes:
    """A float TIFF of side x side in one 4096 x 4096 deflate tile: the buffer is the tile's."""
    tile = 4096
    raw = zlib.compress(bytes(tile * tile * 4), 9)
    entries = [
        (256, side),
        (257, side),
        (258, 32),
        (259, 8),
        (262, 1),
        (277, 1),
        (322, tile),
        (323, tile),
        (324, 8 + 2 + 12 * 11 + 4),
        (325, len(raw)),
        (339, 3),
    ]
    ifd = struct.pack("<H", len(entries))
    ifd += b"".join(struct.pack("<HHII", tag, 4, 1, value) for tag, value in entries)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + raw


ONE_STRIP = {"compression": "tiff_adobe_deflate", "strip_size": 1 << 30}

CASES: dict[str, Callable[[int], bytes]] = {
    "jpeg-baseline": lambda side: encode(rgb(side), "JPEG", quality=90),
    "jpeg-progressive-cmyk": lambda side: encode(
        rgb(side).convert("CMYK"), "JPEG", progressive=True
    ),
    "png-rgba": lambda side: encode(rgba(side), "PNG"),
    "png-la": lambda side: encode(rgba(side).convert("LA"), "PNG"),
    "png-palette-transparency": lambda side: encode(rgb(side).convert("P"), "PNG", transparency=0),
    "png-16-bit-grey": lambda side: encode(
        Image.fromarray(grey(side).astype(np.uint16) * 257), "PNG"
    ),
    "png-rgb-exif-rotated": lambda side: encode(rgb(side), "PNG", exif=rotated_exif()),
    "gif-transparency": lambda side: encode(rgb(side).convert("P"), "GIF", transparency=0),
    "bmp-rgb": lambda side: encode(rgb(side), "BMP"),
    "webp-lossless-alpha": lambda side: encode(rgba(side), "WEBP", lossless=True, method=0),
    "webp-lossy": lambda side: encode(rgb(side), "WEBP", quality=80, method=0),
    "tiff-float-one-strip": lambda side: encode(
        Image.fromarray(grey(side).astype(np.float32) / 7), "TIFF", **ONE_STRIP
    ),
    "tiff-int32": lambda side: encode(
        Image.fromarray(grey(side).astype(np.int32) * 1000), "TIFF", **ONE_STRIP
    ),
    "tiff-rgba-one-strip": lambda side: encode(rgba(side), "TIFF", **ONE_STRIP),
    "tiff-large-tile": large_tile_tiff,
}


def measured_peak(tmp_path: Path, small: bytes, large: bytes) -> int:
    """Peak resident memory `prepare_image(large)` adds in a fresh interpreter."""
    paths = [tmp_path / "small", tmp_path / "large"]
    for path, data in zip(paths, (small, large), strict=True):
        path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *map(str, paths)],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    peak: int = json.loads(done.stdout)["peak"]
    return peak


@pytest.mark.parametrize("case", list(CASES))
def test_the_estimate_bounds_the_measured_peak(tmp_path: Path, case: str) -> None:
    build = CASES[case]
    large = build(SIDE)
    estimate = inspect_image(large, SIZE, 10**9).bytes
    peak = measured_peak(tmp_path, build(256), large)
    print(f"\n{case:26} measured {peak / MIB:6.0f} MiB  estimate {estimate / MIB:6.0f} MiB")
    assert peak <= estimate
    # An upper bound, not a refusal of everything: within 3x plus the fixed allowance.
    assert estimate <= 3 * peak + 48 * MIB


def test_jpeg_draft_scaling_shrinks_the_estimate() -> None:
    photo = encode(rgb(SIDE), "JPEG", quality=90)
    as_png = encode(rgb(SIDE), "PNG")
    jpeg, png = (inspect_image(data, SIZE, 10**9).bytes for data in (photo, as_png))
    assert jpeg < png / 4


def test_a_bigger_picture_costs_more_and_takes_longer() -> None:
    small, large = (inspect_image(encode(rgba(side), "PNG"), SIZE, 10**9) for side in (500, 2000))
    assert large.bytes - small.bytes >= 16 * (2000**2 - 500**2) * 0.5
    assert large.min_seconds > small.min_seconds > 0


def test_decodes_share_the_budget_by_weight() -> None:
    async def scenario() -> None:
        budget = DecodeBudget(100)
        await budget.acquire(60)
        await budget.acquire(40)
        third = asyncio.create_task(budget.acquire(30))
        await asyncio.sleep(0.01)
        assert not third.done()
        assert budget.in_use == 100
        budget.release(40)
        await asyncio.wait_for(third, 1)
        assert budget.in_use == 90

    asyncio.run(scenario())


def test_a_wait_past_its_deadline_times_out_and_holds_nothing() -> None:
    async def scenario() -> None:
        budget = DecodeBudget(100)
        await budget.acquire(80)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await budget.acquire(50, deadline=time.monotonic() + 0.05)
        assert 0.04 < loop.time() - started < 1.0
        assert budget.in_use == 80
        budget.release(80)
        await asyncio.wait_for(budget.acquire(100), 1)

    asyncio.run(scenario())


def test_a_large_decode_at_the_head_is_not_overtaken_by_small_ones() -> None:
    async def scenario() -> None:
        budget = DecodeBudget(100)
        await budget.acquire(50)
        large = asyncio.create_task(budget.acquire(90))
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.acquire(10))  # would fit now: 50 are free
        await asyncio.sleep(0.01)
        assert not large.done()
        assert not small.done()
        budget.release(50)
        await asyncio.wait_for(asyncio.gather(large, small), 1)
        assert budget.in_use == 100

    asyncio.run(scenario())


def test_when_the_head_gives_up_those_behind_it_go_ahead() -> None:
    async def scenario() -> None:
        budget = DecodeBudget(100)
        await budget.acquire(50)
        large = asyncio.create_task(budget.acquire(90))
        await asyncio.sleep(0)
        small = asyncio.create_task(budget.acquire(10))
        await asyncio.sleep(0.01)
        large.cancel()
        await asyncio.wait_for(small, 1)
        assert budget.in_use == 60

    asyncio.run(scenario())


def test_a_decode_larger_than_the_whole_budget_is_refused_at_once() -> None:
    async def scenario() -> None:
        with pytest.raises(ValueError, match="never fit"):
            await DecodeBudget(100).acquire(101)

    asyncio.run(scenario())


def test_a_one_pixel_wide_picture_is_weighed_by_its_rows(tmp_path: Path) -> None:
    # Pillow keeps a pointer per row of every copy: here more than the pixels themselves.
    tall = encode(Image.new("L", (1, 8_000_000), 90), "PNG")
    estimate = inspect_image(tall, SIZE, 10**9).bytes
    peak = measured_peak(tmp_path, encode(Image.new("L", (1, 1000)), "PNG"), tall)
    print(f"\n1x8,000,000 PNG: measured {peak / MIB:.0f} MiB, estimate {estimate / MIB:.0f} MiB")
    assert peak <= estimate
