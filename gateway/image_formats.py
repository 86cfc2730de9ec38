"""Which formats the gateway accepts, and why Pillow refused a file that claims one.

Formats are recognised from the bytes, never from the filename or
Content-Type. When Pillow cannot open an upload, the client is told whether
it is not an image at all, an image format the gateway does not take, a
variant of an accepted format Pillow cannot decode, or a damaged file.
"""

import io

from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from gateway.errors import CorruptImage, GatewayError, NotAnImage, UnsupportedFormat
from gateway.tiff_directory import TiffDirectory, describe_tiff_samples

# Pillow's JPEG plugin also opens MPO, the multi-picture JPEG of phone cameras.
ACCEPTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

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


def reason_of(exc: Exception) -> str:
    """An exception's message for a client, or its type's name when it has none."""
    return str(exc).rstrip(".") or type(exc).__name__


def explain_open_failure(data: bytes, error: Exception, tiff: TiffDirectory | None) -> GatewayError:
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
        reason = f"{reason}: {describe_tiff_samples(tiff)}"
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
        return reason_of(error)
    try:
        Image.OPEN[fmt][0](io.BytesIO(data), "").close()
    except Exception as exc:
        return reason_of(exc)
    return "header not understood"  # never the "cannot identify" text: it holds an address


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
