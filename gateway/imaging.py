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
from PIL import Image, ImageOps, PngImagePlugin, TiffImagePlugin, UnidentifiedImageError

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
# Classic TIFF and BigTIFF: offsets (and value counts), number of entries, entry size.
_TIFF_LAYOUTS = {42: ("I", "H", 12), 43: ("Q", "Q", 20)}
# Bytes per value of each TIFF field type (TIFF 6.0 section 2; BigTIFF adds 16-18).
_TIFF_TYPE_BYTES = (
    dict.fromkeys((1, 2, 6, 7), 1)
    | dict.fromkeys((3, 8), 2)
    | dict.fromkeys((4, 9, 11, 13), 4)
    | dict.fromkeys((5, 10, 12, 16, 17, 18), 8)
)
_TIFF_UNSIGNED = {1: "B", 3: "H", 4: "I", 16: "Q"}
# Read in full to say which variant a TIFF is: samples, bits, compression, sample format.
_TIFF_DESCRIPTIVE_TAGS = frozenset({258, 259, 277, 339})
_TIFF_SAMPLE_FORMATS = {1: "unsigned integer", 2: "signed integer", 3: "floating point"}
# How Pillow's plugins say that a file is of a kind they cannot decode, rather than
# damaged: BMP's "Unsupported BMP compression", TIFF's "unknown pixel mode" and
# "Invalid value for samples per pixel", JPEG's "cannot handle 12-bit layers".
_UNSUPPORTED_VARIANT = (
    "unsupported",
    "not yet supported",
    "cannot handle",
    "unknown pixel mode",
    "samples per pixel",
)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Colour already multiplied by alpha (TIFF's associated alpha): Pillow has no
# conversion from La, and going through RGBA would divide and round for nothing.
_PREMULTIPLIED_MODES = frozenset({"La", "RGBa"})


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
    tiff = _read_tiff_directory(data)
    chunks = max(tiff.counts.get(273, 0), tiff.counts.get(324, 0)) if tiff else 0
    if chunks > MAX_TIFF_CHUNKS:
        raise DecodeTooLarge(
            f"The TIFF is stored in {chunks:,} strips or tiles; the limit is {MAX_TIFF_CHUNKS:,}."
        )
    try:
        image = Image.open(_DeadlineReader(data, deadline), formats=ACCEPTED_FORMATS)
    except GatewayError:
        raise
    except Exception as exc:
        raise _explain_open_failure(data, exc, tiff) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"The image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
        )
    return image


@dataclass(frozen=True)
class _TiffDirectory:
    """A TIFF's first directory as it declares itself, read without Pillow."""

    counts: dict[int, int]  # how many values each tag has
    values: dict[int, tuple[int, ...]]  # the descriptive tags' values
    complete: bool  # the directory, and every value it points to, lie within the file


def _read_tiff_directory(data: bytes) -> _TiffDirectory | None:
    """The first directory of a TIFF or BigTIFF (None for anything else)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    version = struct.unpack_from(f"{order}H", data, 2)[0] if order and len(data) >= 4 else 0
    if version not in _TIFF_LAYOUTS:
        return None
    offset, count, entry_size = _TIFF_LAYOUTS[version]
    width = struct.calcsize(offset)  # of a value kept in its entry, or of its offset
    directory = _unpack_offset(f"{order}{offset}", data, 4 if version == 42 else 8)
    entries = _unpack_offset(f"{order}{count}", data, directory) if directory >= 0 else -1
    if entries < 0:
        return _TiffDirectory({}, {}, complete=False)
    first = directory + struct.calcsize(count)
    present = min(entries, (len(data) - first) // entry_size)
    complete = first + entries * entry_size + width <= len(data)  # entries, then next offset
    counts: dict[int, int] = {}
    values: dict[int, tuple[int, ...]] = {}
    for at in range(first, first + present * entry_size, entry_size):
        tag, kind, n = struct.unpack_from(f"{order}HH{offset}", data, at)
        counts[tag] = n
        size = _TIFF_TYPE_BYTES.get(kind, 0) * n
        where = at + 4 + width
        if size > width:
            where = _unpack_offset(f"{order}{offset}", data, where)
        if where + size > len(data):
            complete = False
        elif n and tag in _TIFF_DESCRIPTIVE_TAGS and kind in _TIFF_UNSIGNED:
            values[tag] = struct.unpack_from(f"{order}{n}{_TIFF_UNSIGNED[kind]}", data, where)
    return _TiffDirectory(counts, values, complete)


def _unpack_offset(layout: str, data: bytes, at: int) -> int:
    """The unsigned integer at `at`, or -1 when the file ends first."""
    # Checked here: a BigTIFF offset past 2**63 overflows struct (OverflowError).
    if not 0 <= at <= len(data) - struct.calcsize(layout):
        return -1
    return int(struct.unpack_from(layout, data, at)[0])


def _explain_open_failure(
    data: bytes, error: Exception, tiff: _TiffDirectory | None
) -> GatewayError:
    """Why Pillow could not open `data`: not an image, another format, a variant, or damage."""
    fmt = _sniff_format(data)
    if fmt is None:
        return _unrecognised(data)
    reason = _plugin_reason(fmt, data, error)
    if tiff is not None:
        if not tiff.complete:
            return CorruptImage(
                f"The TIFF image is cut short: its directory points past the end of the file "
                f"({reason})."
            )
        compression = tiff.values.get(259, (1,))[0]
        if compression not in TiffImagePlugin.COMPRESSION_INFO:
            return _unsupported_variant(fmt, f"compression {compression}")
    if not any(phrase in reason.lower() for phrase in _UNSUPPORTED_VARIANT):
        return CorruptImage(f"The {fmt} image is truncated or corrupt ({reason}).")
    if tiff is not None:
        reason = f"{reason}: {_describe_tiff_samples(tiff)}"
    return _unsupported_variant(fmt, reason)


def _unsupported_variant(fmt: str, reason: str) -> UnsupportedFormat:
    return UnsupportedFormat(
        f"This {fmt} variant is not supported ({reason}); "
        "convert it to 8-bit RGB and send it again."
    )


def _sniff_format(data: bytes) -> str | None:
    """The accepted format whose signature `data` starts with, as Pillow's plugins check it."""
    Image.init()
    for fmt in ACCEPTED_FORMATS:
        accept = Image.OPEN[fmt][1]
        if accept is None or accept(data[:16]):
            return fmt
    return None


def _plugin_reason(fmt: str, data: bytes, error: Exception) -> str:
    """What the `fmt` plugin says about `data`, which `Image.open` words as "cannot identify"."""
    if not isinstance(error, UnidentifiedImageError):
        return _reason(error)
    try:
        Image.OPEN[fmt][0](io.BytesIO(data), "").close()
    except Exception as exc:
        return _reason(exc)
    return "header not understood"  # never the "cannot identify" text: it holds an address


def _describe_tiff_samples(tiff: _TiffDirectory) -> str:
    samples = tiff.values.get(277, (1,))[0]
    bits = "/".join(dict.fromkeys(str(b) for b in tiff.values.get(258, (1,))))
    sample_format = tiff.values.get(339, (1,))[0]
    kind = _TIFF_SAMPLE_FORMATS.get(sample_format, f"sample format {sample_format}")
    return f"{samples} sample{'s' * (samples != 1)} per pixel, {bits}-bit {kind}"


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
    is composited over white (premultiplied or not); every other mode uses
    Pillow's conversion.
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
    if image.mode in _PREMULTIPLIED_MODES:
        return _convert_in_bands(image, _premultiplied_over_white, deadline)
    if _has_alpha(image):
        return _convert_in_bands(image, _over_white, deadline)
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (
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


def _premultiplied_over_white(band: Image.Image) -> Image.Image:
    # Over white, colour c premultiplied by alpha a needs no division: c*a + (1 - a)*255.
    # Colour above its alpha (data that was not premultiplied) clips to white.
    values = np.asarray(band, dtype=np.uint16)
    mixed = np.minimum(values[..., :-1] + (255 - values[..., -1:]), 255).astype(np.uint8)
    return Image.fromarray(mixed[..., 0] if mixed.shape[-1] == 1 else mixed)


def _finite_values(band: Image.Image) -> np.ndarray:
    # Zeroed before the cast to float64: casting a signalling NaN warns.
    values = np.asarray(band)
    return np.where(np.isfinite(values), values, 0).astype(np.float64)


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
