"""Any Pillow mode to 8-bit RGB, the documented way, a band of rows at a time.

16-bit greys keep their high byte, 32-bit integer and float greys are
stretched over their own range, transparency is composited over white.
Working in bands keeps the memory of a 40 MP picture to one RGB copy plus
small temporaries (what gateway/decode_budget.py counts), and lets a decode
whose deadline has passed stop between bands.
"""

from collections.abc import Callable

import numpy as np
from PIL import Image

from gateway.deadlines import raise_if_past
from gateway.decode_budget import BAND_PIXELS

# Mixed over white so a transparent logo does not turn into a black square.
_BACKGROUND = (255, 255, 255, 255)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
# Colour already multiplied by alpha (TIFF's associated alpha): Pillow has no
# conversion from La, and going through RGBA would divide and round for nothing.
_PREMULTIPLIED_MODES = frozenset({"La", "RGBa"})


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
        raise_if_past(deadline)
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
        raise_if_past(deadline)
        values = _finite_values(image.crop(box))
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    return low, high


def _stretch(band: Image.Image, low: float, high: float) -> Image.Image:
    values = _finite_values(band)
    if high <= low:
        return Image.new("L", band.size)
    return Image.fromarray(np.round((values - low) * (255.0 / (high - low))).astype(np.uint8))
