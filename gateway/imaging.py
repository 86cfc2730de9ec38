"""Where an upload becomes a tensor: sniff, bound, decode, orient, convert and resize.

CPU work: callers run `inspect_image` and `prepare_image` in a thread pool
(Pillow releases the GIL while decoding and resizing), in a process that has
applied gateway/library_settings.py. Memory is what
`gateway/decode_budget.py` estimates: the decoded picture, one 4-byte-per-pixel
copy (the RGB conversion or the EXIF transposition) and small bands of
temporaries, never several full-size copies.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from gateway.deadlines import raise_if_past
from gateway.decode_budget import DecodeCost, estimate_decode
from gateway.errors import (
    CorruptImage,
    DecodeTooLarge,
    EmptyFile,
    GatewayError,
    TooManyPixels,
)
from gateway.image_formats import ACCEPTED_FORMATS, explain_open_failure, reason_of
from gateway.resize import resize_rgb
from gateway.rgb import to_rgb
from gateway.tiff_directory import read_tiff_directory

# The EXIF block a JPEG can carry (one APP1 segment); larger ones are ignored.
MAX_EXIF_BYTES = 64 * 1024
# Where Pillow's plugins keep an EXIF block: most formats, and PNG's ImageMagick text.
_EXIF_KEYS = ("exif", "Raw profile type exif")

# Pillow builds Python objects for every strip or tile of a TIFF as it opens
# it: a 9.6 MB file in 1.2 million one-row strips took 7 s and 400 MB before a
# single pixel. Tall pictures stored a row per strip stay well under this.
MAX_TIFF_CHUNKS = 1 << 16


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
    raise_if_past(deadline)
    try:
        pixels = resize_rgb(rgb, size)
    except Exception as exc:
        raise CorruptImage(
            f"The {image_format} image could not be resized ({reason_of(exc)})."
        ) from exc
    return PreparedImage(pixels, original_size, image_format)


def _decode_rgb(
    data: bytes, size: tuple[int, int], max_pixels: int, deadline: float | None
) -> tuple[Image.Image, tuple[int, int], str]:
    # A function of its own so that the decoded original, and whatever its
    # plugin keeps with it (WebP's decoder canvases), is freed on return,
    # before the resize: only the RGB copy lives on.
    raise_if_past(deadline)
    image = _open(data, max_pixels, deadline)
    width, height = image.size
    try:
        # JPEG can decode at 1/2, 1/4 or 1/8 scale: ask for the smallest
        # scale that still covers the model's input, before any decoding.
        image.draft(None, size)
        image.load()
        decoded_size = image.size
        _drop_oversized_exif(image)
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when upright
        raise_if_past(deadline)
        rgb = to_rgb(image, deadline)
    except GatewayError:
        raise
    except Exception as exc:
        # Malformed files make Pillow raise nearly anything (struct.error from a
        # cut-short EXIF block, IndexError, EOFError...): all of it is bad input.
        raise CorruptImage(
            f"The {image.format} image could not be decoded ({reason_of(exc)})."
        ) from exc
    if image.size != decoded_size:
        # Report the picture as displayed: EXIF orientation turned it a quarter.
        width, height = height, width
    if rgb is not image:
        image.close()
    return rgb, (width, height), str(image.format)


def _drop_oversized_exif(image: Image.Image) -> None:
    """Forget an EXIF block larger than a camera writes, orientation and all.

    Pillow's EXIF handling turns every byte of the block into Python objects
    (about 40 bytes each, in one call the deadline cannot interrupt): a 10 MB
    block in a 4x4 PNG took 679 MiB and 15 s. JPEG cannot carry more than one
    64 KiB segment of it, which is what cameras fit in; PNG and WebP can.
    """
    for key in _EXIF_KEYS:
        if len(image.info.get(key) or b"") > MAX_EXIF_BYTES:
            del image.info[key]


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
        raise_if_past(self._deadline)
        return super().read(size)


def _open(data: bytes, max_pixels: int, deadline: float | None) -> Image.Image:
    """Identify the format and bound the pixel count from the header, without decoding pixels."""
    if not data:
        raise EmptyFile("The uploaded file is empty.")
    tiff = read_tiff_directory(data)
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
        raise explain_open_failure(data, exc, tiff) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise TooManyPixels(
            f"The image is {width}x{height} ({width * height:,} pixels); "
            f"the limit is {max_pixels:,} pixels."
        )
    return image
