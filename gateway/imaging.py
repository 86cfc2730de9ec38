"""Where an upload becomes a tensor: sniff, bound, decode, orient, convert and resize.

CPU work: callers run `prepare_image` in a thread pool (Pillow releases the GIL
while decoding and resizing).
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gateway.errors import CorruptImage, EmptyFile, NotAnImage, TooManyPixels, UnsupportedFormat
from gateway.resize import resize_rgb

# Formats are recognised from the bytes, never from the filename or Content-Type.
# Pillow's JPEG plugin also opens MPO, the multi-picture JPEG of phone cameras.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

# The gateway enforces its own pixel cap from the header (TooManyPixels), so
# Pillow's process-wide bomb warning would only fire after our check anyway.
Image.MAX_IMAGE_PIXELS = None

# Mixed over white so a transparent logo does not turn into a black square.
_BACKGROUND = (255, 255, 255)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})


@dataclass(frozen=True)
class PreparedImage:
    """Model-ready pixels plus what the response reports about the original."""

    pixels: np.ndarray  # uint8, (height, width, 3)
    original_size: tuple[int, int]  # (width, height) as displayed: EXIF orientation applied
    format: str


def prepare_image(data: bytes, size: tuple[int, int], max_pixels: int) -> PreparedImage:
    """Decode `data` and resize it to `size` (width, height), or raise a GatewayError."""
    if not data:
        raise EmptyFile("The uploaded file is empty.")
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"The image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
        )
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale: ask for the smallest
        # scale that still covers the model's input, before any decoding.
        image.draft(None, size)
        image.load()
        decoded_size = image.size
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
        pixels = resize_rgb(to_rgb(image), size)
    except Exception as exc:
        # Malformed files make Pillow raise nearly anything (struct.error from a
        # cut-short EXIF block, IndexError, EOFError...): all of it is bad input.
        raise CorruptImage(
            f"The {image.format} image could not be decoded ({_reason(exc)})."
        ) from exc
    if image.size != decoded_size:
        # Report the picture as displayed: EXIF orientation turned it a quarter.
        width, height = height, width
    return PreparedImage(pixels, (width, height), str(image.format))


def _reason(exc: Exception) -> str:
    return str(exc).rstrip(".") or type(exc).__name__


def _open(data: bytes) -> Image.Image:
    """Identify the format from the header without decoding pixels."""
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        pass
    except Exception as exc:
        raise CorruptImage(f"The image header could not be read ({_reason(exc)}).") from exc
    try:
        other = Image.open(io.BytesIO(data))
    except Exception:
        raise NotAnImage(
            "The file is not an image this service recognises; "
            f"send one of: {', '.join(accepted_format_names())}."
        ) from None
    raise UnsupportedFormat(
        f"{other.format} images are not accepted; send one of: "
        f"{', '.join(accepted_format_names())}."
    )


def accepted_format_names() -> list[str]:
    """The formats users may send, as documented."""
    return list(ACCEPTED_FORMATS)


def to_rgb(image: Image.Image) -> Image.Image:
    """Bring any Pillow mode to 8-bit RGB the documented way.

    16-bit greys keep their high byte; 32-bit integer and float greys are
    stretched from their own minimum to maximum; anything with transparency
    is composited over white; every other mode uses Pillow's conversion.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        grey = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if image.mode in ("I", "F"):
        return Image.fromarray(_stretch_to_bytes(np.asarray(image))).convert("RGB")
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*_BACKGROUND, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    )


def _stretch_to_bytes(values: np.ndarray) -> np.ndarray:
    finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(finite.shape, dtype=np.uint8)
    return np.round((finite - low) * (255.0 / (high - low))).astype(np.uint8)
