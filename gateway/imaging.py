"""Where an upload becomes a tensor: sniff, bound, decode, orient, convert and resize.

CPU work: callers run `inspect_image` and `prepare_image` in a thread pool
(Pillow releases the GIL while decoding and resizing). Memory is what
`gateway/decode_budget.py` estimates: the decoded picture, one 4-byte-per-pixel
copy (the RGB conversion or the EXIF transposition) and small bands of
temporaries, never several full-size copies.
"""

import io
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from gateway.decode_budget import BAND_PIXELS, DecodeCost, estimate_decode
from gateway.errors import (
    CorruptImage,
    DeadlineExceeded,
    DecodeTooLarge,
    EmptyFile,
    GatewayError,
    NotAnImage,
    TooManyPixels,
    UnsupportedFormat,
)
from gateway.resize import resize_rgb

# Formats are recognised from the bytes, never from the filename or Content-Type.
# Pillow's JPEG plugin also opens MPO, the multi-picture JPEG of phone cameras.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

# The gateway enforces its own pixel cap from the header (TooManyPixels), so
# Pillow's process-wide bomb warning would only fire after our check anyway.
Image.MAX_IMAGE_PIXELS = None
# PNG text chunks are decompressed as the header is read, before any budget
# can weigh them: Pillow's 64 MiB allowance let a 60 KB file take 60 MB.
# Real metadata (XMP, EXIF as text) is far smaller.
PngImagePlugin.MAX_TEXT_MEMORY = 4 * 1024 * 1024

# Mixed over white so a transparent logo does not turn into a black square.
_BACKGROUND = (255, 255, 255, 255)
# Pillow builds Python objects for every strip or tile of a TIFF as it opens
# it: a 9.6 MB file in 1.2 million one-row strips took 7 s and 400 MB before a
# single pixel. Tall pictures stored a row per strip stay well under this.
MAX_TIFF_CHUNKS = 1 << 16
_TIFF_LAYOUTS = {42: ("I", "H", 12), 43: ("Q", "Q", 20)}  # classic and BigTIFF
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class PreparedImage:
    """Model-ready pixels plus what the response reports about the original."""

    pixels: np.ndarray  # uint8, (height, width, 3)
    original_size: tuple[int, int]  # (width, height) as displayed: EXIF orientation applied
    format: str


def inspect_image(data: bytes, size: tuple[int, int], max_pixels: int) -> DecodeCost:
    """What decoding `data` for `size` will cost, read from the header alone, or a GatewayError."""
    image = _open(data, max_pixels, deadline=None)
    full_size = image.size
    image.draft(None, size)
    return estimate_decode(image, data, full_size, size)


def prepare_image(
    data: bytes, size: tuple[int, int], max_pixels: int, deadline: float | None = None
) -> PreparedImage:
    """Decode `data` and resize it to `size` (width, height), or raise a GatewayError.

    `deadline` (a `time.monotonic()` instant) stops the work between stages and
    while compressed data is read, once nobody waits for the answer.
    """
    rgb, original_size, image_format = _decode_rgb(data, size, max_pixels, deadline)
    _check(deadline)
    try:
        pixels = resize_rgb(rgb, size)
    except Exception as exc:
        raise CorruptImage(
            f"The {image_format} image could not be resized ({_reason(exc)})."
        ) from exc
    return PreparedImage(pixels, original_size, image_format)


def _decode_rgb(
    data: bytes, size: tuple[int, int], max_pixels: int, deadline: float | None
) -> tuple[Image.Image, tuple[int, int], str]:
    # A function of its own so that the decoded original, and whatever its
    # plugin keeps with it (WebP's decoder canvases), is freed on return,
    # before the resize: only the RGB copy lives on.
    _check(deadline)
    image = _open(data, max_pixels, deadline)
    width, height = image.size
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale: ask for the smallest
        # scale that still covers the model's input, before any decoding.
        image.draft(None, size)
        image.load()
        decoded_size = image.size
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
        _check(deadline)
        rgb = to_rgb(image, deadline)
    except GatewayError:
        raise
    except Exception as exc:
        # Malformed files make Pillow raise nearly anything (struct.error from a
        # cut-short EXIF block, IndexError, EOFError...): all of it is bad input.
        raise CorruptImage(
            f"The {image.format} image could not be decoded ({_reason(exc)})."
        ) from exc
    if image.size != decoded_size:
        # Report the picture as displayed: EXIF orientation turned it a quarter.
        width, height = height, width
    if rgb is not image:
        image.close()
    return rgb, (width, height), str(image.format)


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("The request's deadline passed before its image was decoded.")


class _DeadlineReader(io.BytesIO):
    """The upload as a file whose every read first checks the deadline.

    Pillow decodes PNG, JPEG, GIF and BMP as it reads, 64 KiB at a time, so a
    decode whose deadline has passed stops within one such block; WebP and
    compressed TIFF decode in one call and stop between stages only.
    """

    def __init__(self, data: bytes, deadline: float | None) -> None:
        super().__init__(data)
        self._deadline = deadline

    def read(self, size: int | None = -1, /) -> bytes:
        _check(self._deadline)
        return super().read(size)


def _reason(exc: Exception) -> str:
    return str(exc).rstrip(".") or type(exc).__name__


def _open(data: bytes, max_pixels: int, deadline: float | None) -> Image.Image:
    """Identify the format and bound the pixel count from the header, without decoding pixels."""
    if not data:
        raise EmptyFile("The uploaded file is empty.")
    chunks = _tiff_chunks(data)
    if chunks > MAX_TIFF_CHUNKS:
        raise DecodeTooLarge(
            f"The TIFF is stored in {chunks:,} strips or tiles; the limit is {MAX_TIFF_CHUNKS:,}."
        )
    try:
        image = Image.open(_DeadlineReader(data, deadline), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise _unrecognised(data) from None
    except GatewayError:
        raise
    except Exception as exc:
        raise CorruptImage(f"The image header could not be read ({_reason(exc)}).") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"The image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
        )
    return image


def _tiff_chunks(data: bytes) -> int:
    """How many strips or tiles a TIFF's first directory declares (0 for anything else)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    try:
        (version,) = struct.unpack_from(f"{order}H", data, 2) if order else (0,)
        if version not in _TIFF_LAYOUTS:
            return 0
        offset, count, entry_size = _TIFF_LAYOUTS[version]
        (directory,) = struct.unpack_from(f"{order}{offset}", data, 4 if version == 42 else 8)
        (entries,) = struct.unpack_from(f"{order}{count}", data, directory)
        first = directory + struct.calcsize(count)
        fields = (
            struct.unpack_from(f"{order}HH{offset}", data, first + index * entry_size)
            for index in range(entries)
        )
        return max((n for tag, _, n in fields if tag in (273, 324)), default=0)
    except struct.error:
        return 0  # cut short: Pillow says what is wrong with it


def _unrecognised(data: bytes) -> GatewayError:
    try:
        other = Image.open(io.BytesIO(data))
    except Exception:
        return NotAnImage(
            "The file is not an image this service recognises; "
            f"send one of: {', '.join(accepted_format_names())}."
        )
    return UnsupportedFormat(
        f"{other.format} images are not accepted; send one of: "
        f"{', '.join(accepted_format_names())}."
    )


def accepted_format_names() -> list[str]:
    """The formats users may send, as documented."""
    return list(ACCEPTED_FORMATS)


def to_rgb(image: Image.Image, deadline: float | None = None) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB the documented way.

    16-bit greys keep their high byte; 32-bit integer and float greys are
    stretched from their own minimum to maximum; anything with transparency
    is composited over white; every other mode uses Pillow's conversion.
    Numpy and compositing work a band of rows at a time, into one RGB copy,
    and stop between bands once `deadline` has passed.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        return _convert_in_bands(image, _high_byte, deadline)
    if image.mode in ("I", "F"):
        low, high = _finite_range(image, deadline)
        return _convert_in_bands(image, lambda band: _stretch(band, low, high), deadline)
    if _has_alpha(image):
        return _convert_in_bands(image, _over_white, deadline)
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _bands(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes of at most BAND_PIXELS pixels covering `image`, row by row."""
    width, height = image.size
    band_width = min(width, BAND_PIXELS)
    band_height = max(1, BAND_PIXELS // band_width)
    return [
        (left, top, min(left + band_width, width), min(top + band_height, height))
        for top in range(0, height, band_height)
        for left in range(0, width, band_width)
    ]


def _convert_in_bands(
    image: Image.Image, convert: Callable[[Image.Image], Image.Image], deadline: float | None
) -> Image.Image:
    rgb = Image.new("RGB", image.size)
    for box in _bands(image):
        _check(deadline)
        rgb.paste(convert(image.crop(box)).convert("RGB"), box[:2])
    return rgb


def _high_byte(band: Image.Image) -> Image.Image:
    return Image.fromarray((np.asarray(band, dtype=np.uint16) >> 8).astype(np.uint8))


def _over_white(band: Image.Image) -> Image.Image:
    canvas = Image.new("RGBA", band.size, _BACKGROUND)
    return Image.alpha_composite(canvas, band.convert("RGBA"))


def _finite_values(band: Image.Image) -> np.ndarray:
    values = np.asarray(band, dtype=np.float64)
    return np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def _finite_range(image: Image.Image, deadline: float | None) -> tuple[float, float]:
    """Minimum and maximum, NaN and infinities counted as 0."""
    low, high = np.inf, -np.inf
    for box in _bands(image):
        _check(deadline)
        values = _finite_values(image.crop(box))
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def _stretch(band: Image.Image, low: float, high: float) -> Image.Image:
    values = _finite_values(band)
    if high <= low:
        return Image.new("L", band.size)
    return Image.fromarray(np.round((values - low) * (255.0 / (high - low))).astype(np.uint8))
