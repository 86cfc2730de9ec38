"""The decode memory budget: what one decode takes, read from its header, and who may start.

Why: a compressed file of a few hundred KB can hold MAX_IMAGE_PIXELS pixels,
and its decode then needs hundreds of MB; several at once got the pod killed.
The pixel cap bounds one picture, not the copies its decoder and conversion
make, nor how many decode at once. So each decode is weighed from its header
before it starts (`estimate_decode`, an upper bound of the memory it adds,
checked against measured peak RSS for every format and colour mode by
test/e2e/test_decode_budget.py), and `DecodeBudget` admits decodes only while the
ones admitted fit in DECODE_MEMORY_BUDGET_MB. The gateway's peak memory is
then set by its configuration, whatever arrives (README, "Deployment security
and sizing").
"""

import asyncio
import contextlib
import ctypes
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

from gateway.resize import REDUCING_GAP

MIB = 1024 * 1024
# Conversions work through bands of this many pixels (gateway/rgb.py).
BAND_PIXELS = 1 << 17
# A band's temporaries at their largest: float64 copies while a 32-bit grey is stretched.
_BAND_BYTES = BAND_PIXELS * 64
# Per pixel of the reduced picture the resize filters: Pillow's copy, numpy's and OpenCV's.
_RESIZE_BYTES_PER_PIXEL = 16
# Allocator and interpreter overhead of one decode, whatever its size (measured: under 8 MiB).
_FIXED_BYTES = 16 * MIB
# Pillow's objects for one TIFF strip or tile: its tile entry, offset and count
# (measured: 23 MiB for 65,536 strips).
_TIFF_BYTES_PER_CHUNK = 512
# How fast decoders turn out pixels, at the slow end of what was measured here
# (a 40 MP float TIFF or RGBA WebP: 1 to 2.5 s; a 480x360 JPEG: under 1 ms): a
# decode that cannot start this long before its deadline would most likely run
# past it, wasting the CPU and ending in a 504. It is answered 503 instead
# (the gateway was too busy to start it in time).
_PIXELS_PER_SECOND = 20e6
# Pillow keeps a pointer for every row of every image it holds: a 1x40,000,000
# PNG costs 305 MiB per copy in row pointers alone, more than its pixels.
_ROW_POINTER_BYTES = 8
# glibc keeps what a thread frees for that thread's next allocations: after a
# 6300x6300 TIFF the gateway stayed 300 MiB larger, and the next decode (a WebP,
# whose buffers are fresh mappings) came on top. Past this size a decode hands
# its freed memory back before its share of the budget is given back.
_TRIM_FROM_BYTES = 64 * MIB
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only


@dataclass(frozen=True)
class DecodeCost:
    """An upper bound of the memory one decode adds, and a lower bound of its time."""

    bytes: int
    min_seconds: float


def estimate_decode(
    image: Image.Image, data: bytes, full_size: tuple[int, int], size: tuple[int, int]
) -> DecodeCost:
    """The cost of decoding `image` (opened, drafted, not loaded) and resizing it to `size`.

    `full_size` is the header's size before JPEG's draft scaling; `data` the upload.
    """
    width, height = image.size
    pixels = width * height
    # Per copy of the picture; max(): the EXIF turn makes rows of the columns.
    rows = _ROW_POINTER_BYTES * max(width, height)
    stored = pixels * _stored_bytes_per_pixel(image.mode) + rows
    transient, kept = _decoder_scratch(image, data, full_size)
    # Stages run one after another: the decode, then the RGB conversion or the
    # EXIF transposition (each one 4-byte copy next to the decoded picture),
    # then the resize of the RGB copy once the original has gone.
    decoding = stored + transient
    converting = stored + 4 * pixels + rows + _BAND_BYTES
    reduced = min(width, 2 * REDUCING_GAP * size[0]) * min(height, 2 * REDUCING_GAP * size[1])
    resizing = 4 * pixels + rows + math.ceil(reduced) * _RESIZE_BYTES_PER_PIXEL
    # Decoders' copies of the upload and its metadata: at most twice its bytes.
    peak = max(decoding, converting, resizing) + kept + 2 * len(data) + _FIXED_BYTES
    # Time goes with the pixels decoded: a JPEG's draft scale makes 12 MP photos quick.
    return DecodeCost(peak, pixels / _PIXELS_PER_SECOND)


def return_freed_memory(cost: DecodeCost) -> None:
    """After a large decode, return the memory it freed to the system (a no-op off glibc)."""
    if cost.bytes >= _TRIM_FROM_BYTES and _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _stored_bytes_per_pixel(mode: str) -> int:
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4  # Pillow pads RGB, LA and PA to four bytes


def _decoder_scratch(
    image: Image.Image, data: bytes, full_size: tuple[int, int]
) -> tuple[int, int]:
    """Memory a format's decoder holds beside the picture: while decoding, and after."""
    full_pixels = full_size[0] * full_size[1]
    if image.format in ("JPEG", "MPO"):
        return _jpeg_coefficients(image, data, full_size), 0
    if image.format == "WEBP":
        # libwebp's animation decoder keeps two full canvases for as long as the
        # image lives; decoding adds its own ARGB buffer, then Pillow's bytes copy.
        return 4 * full_pixels, 8 * full_pixels
    if image.format == "TIFF":
        return _tiff_strip_bytes(image), _TIFF_BYTES_PER_CHUNK * _tiff_chunks(image)
    if image.format == "PNG":
        # Text chunks live on in the image, as str: up to 4 bytes a character.
        return 0, 4 * PngImagePlugin.MAX_TEXT_MEMORY
    return 0, 0


def _jpeg_coefficients(image: Image.Image, data: bytes, full_size: tuple[int, int]) -> int:
    """libjpeg's whole-image coefficient buffer: progressive or multi-scan files need one."""
    layers: list[tuple[int, int, int, int]] = getattr(image, "layer", [])
    progressive = bool(image.info.get("progressive"))
    if not layers or not (progressive or _jpeg_first_scan_is_partial(data, len(layers))):
        return 0
    h_max = max(h for _, h, _, _ in layers)
    v_max = max(v for _, _, v, _ in layers)
    mcus = math.ceil(full_size[0] / (8 * h_max)) * math.ceil(full_size[1] / (8 * v_max))
    blocks_per_mcu = sum(h * v for _, h, v, _ in layers)
    return mcus * blocks_per_mcu * 64 * 2  # 64 coefficients of 2 bytes per 8x8 block


def _jpeg_first_scan_is_partial(data: bytes, components: int) -> bool:
    """Whether the first scan holds fewer components than the frame: more scans follow."""
    position = 2
    while position + 4 < len(data):
        if data[position] != 0xFF:
            return True  # not where a marker should be: assume the worst
        marker = data[position + 1]
        if marker == 0xFF:
            position += 1
        elif marker == 0xDA:
            return data[position + 4] < components
        elif 0xD0 <= marker <= 0xD8 or marker == 0x01:
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return True


def _tiff_chunks(image: Image.Image) -> int:
    tags = getattr(image, "tag_v2", {})
    return max(len(tags.get(273, ())), len(tags.get(324, ())), 1)


def _tiff_strip_bytes(image: Image.Image) -> int:
    """The strip or tile buffer libtiff decodes into, as the header declares it."""
    tags = getattr(image, "tag_v2", {})
    width, height = image.size
    samples = int(tags.get(277, 1))
    bits = tags.get(258, (1,))
    bits_per_sample = max(bits) if isinstance(bits, tuple) else int(bits)
    # JPEG and YCbCr TIFFs go through libtiff's RGBA reader: 4 bytes a pixel.
    bytes_per_pixel = max(math.ceil(samples * bits_per_sample / 8), 4)
    if 322 in tags and 323 in tags:
        return int(tags[322]) * int(tags[323]) * bytes_per_pixel
    rows = min(int(tags.get(278, height)), height)
    return rows * width * bytes_per_pixel


class DecodeBudget:
    """A weighted FIFO semaphore over decode memory, waited for until a deadline.

    First come, first served: a large decode at the head of the queue is not
    overtaken by smaller ones behind it, so it cannot starve.

    Waiting happens on the event loop; `try_acquire` and `release_from_thread`
    also work from a decoding thread, so an upload that finds room decodes in the
    same thread hop that read its header, and gives its bytes back without waking
    the loop unless someone waits (gateway/pipeline.py). One lock guards the
    count and the queue, so a release from a thread never misses a waiter that
    was queuing meanwhile.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self._available = capacity_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        """Bytes held by admitted decodes."""
        return self.capacity - self._available

    def try_acquire(self, weight: int) -> bool:
        """Hold `weight` bytes if they are free and nobody is in line; from any thread."""
        with self._lock:
            if self._waiters or weight > self._available:
                return False
            self._available -= weight
            return True

    async def acquire(self, weight: int, deadline: float | None = None) -> None:
        """Hold `weight` bytes, waiting in line; TimeoutError when `deadline` comes first."""
        if weight > self.capacity:
            raise ValueError(f"{weight} bytes can never fit in {self.capacity}")
        with self._lock:
            if not self._waiters and weight <= self._available:
                self._available -= weight
                return
            waiter = (weight, asyncio.get_running_loop().create_future())
            self._waiters.append(waiter)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            async with asyncio.timeout(remaining):
                await waiter[1]
        except BaseException:
            if waiter[1].done() and not waiter[1].cancelled():
                self.release(weight)  # granted as the wait ended: give it back
            else:
                with self._lock, contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._grant()  # the head may have left: those behind it may fit
            raise

    def release(self, weight: int) -> None:
        """Give back `weight` bytes and admit whoever now fits, in order (on the loop)."""
        with self._lock:
            self._available += weight
        self._grant()

    def release_from_thread(self, weight: int, loop: asyncio.AbstractEventLoop) -> None:
        """Give back `weight` bytes from another thread; wake `loop` only if someone waits."""
        with self._lock:
            self._available += weight
            waiting = bool(self._waiters)
        if waiting:
            with contextlib.suppress(RuntimeError):  # the loop has closed at shutdown
                loop.call_soon_threadsafe(self._grant)

    def _grant(self) -> None:
        with self._lock:
            while self._waiters and self._waiters[0][0] <= self._available:
                weight, future = self._waiters.popleft()
                if not future.done():
                    self._available -= weight
                    future.set_result(None)
