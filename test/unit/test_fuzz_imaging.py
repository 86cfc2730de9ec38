"""The decode path under attack: any upload is a GatewayError or a (224, 224, 3) uint8 tensor.

Images are built with Pillow from small generated pixels in every accepted
format and every colour mode the format can store, then mutated and cut short.
"""

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gateway.errors import GatewayError
from gateway.imaging import PreparedImage, prepare_image

SIZE = (224, 224)
# Small enough that a mutated header cannot make one example decode for seconds.
MAX_PIXELS = 1_000_000

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# The modes Pillow 13 can write in each format ("P+t": palette with a transparent index),
# and La: a grey TIFF with premultiplied (associated) alpha, which Pillow reads but cannot write.
FORMAT_MODES: dict[str, tuple[str, ...]] = {
    "JPEG": ("1", "L", "RGB", "CMYK"),
    "PNG": ("1", "L", "LA", "P", "P+t", "RGB", "RGBA", "I;16"),
    "GIF": ("1", "L", "P", "P+t", "RGB"),
    "BMP": ("1", "L", "P", "RGB", "RGBA"),
    "WEBP": ("L", "LA", "P", "RGB", "RGBA"),
    "TIFF": (
        *("1", "L", "LA", "La", "P", "P+t", "PA", "RGB", "RGBA", "CMYK", "LAB", "YCbCr"),
        *("I;16", "I;16B", "I", "F"),
    ),
}
COMBINATIONS = [(fmt, mode) for fmt, modes in FORMAT_MODES.items() for mode in modes]
ORIENTABLE = ("JPEG", "PNG", "WEBP", "TIFF")
EXIF_ORIENTATION = 0x0112
EXTRA_SAMPLES = 338
BANDS = {
    **dict.fromkeys(("1", "L", "P", "P+t"), 1),
    **dict.fromkeys(("LA", "La", "PA"), 2),
    **dict.fromkeys(("RGB", "LAB", "YCbCr"), 3),
    **dict.fromkeys(("RGBA", "CMYK"), 4),
}
MAGIC_NUMBERS = [
    b"\xff\xd8\xff\xe0",
    b"\xff\xd8\xff\xe1",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x00\x00\x00\x00WEBPVP8L",
    b"II*\x00",
    b"MM\x00*",
    b"II+\x00\x08\x00\x00\x00",  # BigTIFF
    b"MM\x00+\x00\x08\x00\x00",
]


@dataclass(frozen=True)
class Sample:
    """One generated image file and what it should decode to."""

    data: bytes
    fmt: str
    mode: str
    width: int
    height: int
    orientation: int | None


def pixels_for(mode: str, width: int, height: int, seed: int, extremes: bool) -> Image.Image:
    """Random pixels in `mode`; `extremes` puts the type's limits (and NaN, inf) in."""
    rng = np.random.default_rng(seed)
    shape = (height, width)
    if mode in ("I;16", "I;16B"):
        values = rng.integers(0, 65536, shape, dtype=np.uint16)
        if extremes:
            values.flat[:2] = [0, 65535][: values.size]
        order = ">" if mode == "I;16B" else "<"
        return Image.frombytes(mode, (width, height), values.astype(f"{order}u2").tobytes())
    if mode == "I":
        values = rng.integers(-(2**31), 2**31 - 1, shape, dtype=np.int32, endpoint=True)
        return Image.frombytes("I", (width, height), values.tobytes())
    if mode == "F":
        floats = rng.standard_normal(shape).astype(np.float32) * 1e6
        if extremes:
            floats.flat[: min(3, floats.size)] = [np.nan, np.inf, -np.inf][: floats.size]
        return Image.frombytes("F", (width, height), floats.tobytes())
    bands = BANDS[mode]
    raw = rng.integers(0, 256, (*shape, bands), dtype=np.uint8)
    if mode in ("1", "L", "P", "P+t"):
        grey = Image.frombytes("L", (width, height), raw.tobytes())
        return grey.convert("1") if mode == "1" else grey.convert("P") if mode != "L" else grey
    return Image.frombytes(mode, (width, height), raw.tobytes())


def encode(image: Image.Image, fmt: str, mode: str, orientation: int | None) -> bytes:
    """Save `image` as `fmt`, with a transparent palette index and an EXIF orientation if asked."""
    if image.mode == "La":
        straight = Image.frombytes("LA", image.size, image.tobytes())
        return associate_alpha(encode(straight, fmt, "LA", orientation))
    options: dict[str, object] = {}
    if mode == "P+t":
        options["transparency"] = 0
    if orientation is not None and fmt == "TIFF":
        options["tiffinfo"] = {274: orientation}
    elif orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def associate_alpha(tiff: bytes) -> bytes:
    """An LA TIFF from Pillow with its alpha declared premultiplied: Pillow reads that as La."""
    assert tiff[:4] == b"II*\x00"
    data = bytearray(tiff)
    (directory,) = struct.unpack_from("<I", data, 4)
    (entries,) = struct.unpack_from("<H", data, directory)
    for at in range(directory + 2, directory + 2 + 12 * entries, 12):
        if struct.unpack_from("<H", data, at)[0] == EXTRA_SAMPLES:
            struct.pack_into("<H", data, at + 8, 1)  # 1: associated alpha (was 2: unassociated)
            return bytes(data)
    raise AssertionError("Pillow wrote an LA TIFF without ExtraSamples")


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    fmt, mode = draw(st.sampled_from(COMBINATIONS))
    width = draw(st.integers(1, 48))
    height = draw(st.integers(1, 48))
    orientation = draw(st.none() | st.integers(1, 8)) if fmt in ORIENTABLE else None
    image = pixels_for(mode, width, height, draw(st.integers(0, 2**32 - 1)), draw(st.booleans()))
    return Sample(encode(image, fmt, mode, orientation), fmt, mode, width, height, orientation)


def prepare(data: bytes) -> PreparedImage | GatewayError:
    """The gateway's answer for `data`: its tensor, or the GatewayError it raised.

    Pillow warns about some odd files; in production a warning changes nothing
    the client gets, so it is recorded and dropped here rather than turned
    into an error by pytest's filterwarnings.
    """
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            return prepare_image(data, SIZE, MAX_PIXELS)
        except GatewayError as error:
            return error


def assert_model_input(prepared: PreparedImage) -> None:
    assert prepared.pixels.shape == (224, 224, 3)
    assert prepared.pixels.dtype == np.uint8
    assert prepared.format in FORMAT_MODES


def assert_answer(answer: PreparedImage | GatewayError) -> None:
    """Either a documented client error with a message, or model-ready pixels."""
    if isinstance(answer, GatewayError):
        assert 400 <= answer.status < 500, answer
        assert answer.detail
    else:
        assert_model_input(answer)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_cleanly(data: bytes) -> None:
    assert_answer(prepare(data))


@FUZZ
@given(st.sampled_from(MAGIC_NUMBERS), st.binary(max_size=2048))
def test_a_real_magic_number_followed_by_garbage_is_refused_cleanly(
    magic: bytes, rest: bytes
) -> None:
    answer = prepare(magic + rest)
    assert_answer(answer)


@FUZZ
@given(samples())
def test_every_format_mode_size_and_orientation_decodes_to_model_input(sample: Sample) -> None:
    answer = prepare(sample.data)
    assert not isinstance(answer, GatewayError), (sample.fmt, sample.mode, answer)
    assert_model_input(answer)
    assert answer.format == sample.fmt
    # Which way round under orientations 5-8 is the orientation test's business.
    assert answer.original_size in {(sample.width, sample.height), (sample.height, sample.width)}


def mutate(draw: st.DrawFn, original: bytes, keep: int = 0) -> bytes:
    """One to four byte flips, cuts, insertions, deletions or repeats past the first `keep`."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "repeat"]))
        at = draw(st.integers(min(keep, len(data)), max(len(data) - 1, keep)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
    return bytes(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    return mutate(draw, draw(samples()).data)


@FUZZ
@given(mutated())
def test_mutated_and_truncated_images_are_refused_cleanly(data: bytes) -> None:
    assert_answer(prepare(data))


@FUZZ
@given(samples(), st.data())
def test_every_cut_of_a_real_image_is_refused_cleanly(sample: Sample, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(sample.data) - 1))
    assert_answer(prepare(sample.data[:cut]))


@st.composite
def mangled_exif(draw: st.DrawFn) -> bytes:
    """An RGB file whose EXIF block (orientation, camera make) has been mutated."""
    fmt = draw(st.sampled_from(["JPEG", "PNG", "WEBP"]))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = draw(st.integers(0, 9))
    exif[0x010F] = "Camera"  # Make
    block = mutate(draw, exif.tobytes(), keep=len(b"Exif\x00\x00"))
    buffer = io.BytesIO()
    Image.new("RGB", (9, 7), (10, 20, 30)).save(buffer, format=fmt, exif=block)
    return buffer.getvalue()


@FUZZ
@given(mangled_exif())
def test_a_mangled_exif_block_never_breaks_decoding(data: bytes) -> None:
    assert_answer(prepare(data))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_an_exif_block_cut_short_after_its_byte_order_mark_is_refused_cleanly(fmt: str) -> None:
    # Found by the test above: Pillow raises struct.error reading this EXIF, which is
    # neither OSError nor ValueError, so the gateway answered 500 internal_error.
    buffer = io.BytesIO()
    Image.new("RGB", (9, 7), (10, 20, 30)).save(buffer, format=fmt, exif=b"II*\x00")
    assert_answer(prepare(buffer.getvalue()))


# Four quadrants of distinct colours, as the picture should look once upright.
QUADRANTS = {
    "top-left": (255, 0, 0),
    "top-right": (0, 255, 0),
    "bottom-left": (0, 0, 255),
    "bottom-right": (255, 255, 0),
}
UPRIGHT_WIDTH, UPRIGHT_HEIGHT = 48, 32


def upright_picture() -> np.ndarray:
    picture = np.zeros((UPRIGHT_HEIGHT, UPRIGHT_WIDTH, 3), dtype=np.uint8)
    half_h, half_w = UPRIGHT_HEIGHT // 2, UPRIGHT_WIDTH // 2
    picture[:half_h, :half_w] = QUADRANTS["top-left"]
    picture[:half_h, half_w:] = QUADRANTS["top-right"]
    picture[half_h:, :half_w] = QUADRANTS["bottom-left"]
    picture[half_h:, half_w:] = QUADRANTS["bottom-right"]
    return picture


def as_stored(upright: np.ndarray, orientation: int) -> np.ndarray:
    """How a camera stores `upright` under an EXIF orientation (EXIF 2.3, tag 0x0112).

    Orientation 6 means the stored rows must turn 90 degrees clockwise to be
    seen upright, so the stored array is the upright one turned anticlockwise;
    the mirrored values (2, 4, 5, 7) are their own inverses.
    """
    stored = {
        1: upright,
        2: upright[:, ::-1],
        3: upright[::-1, ::-1],
        4: upright[::-1, :],
        5: upright.transpose(1, 0, 2),
        6: np.rot90(upright, k=1),
        7: np.rot90(upright, k=2).transpose(1, 0, 2),
        8: np.rot90(upright, k=-1),
    }[orientation]
    return np.ascontiguousarray(stored)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ORIENTABLE)
def test_exif_orientation_turns_the_picture_upright(fmt: str, orientation: int) -> None:
    stored = Image.fromarray(as_stored(upright_picture(), orientation))
    answer = prepare(encode(stored, fmt, "RGB", orientation))
    assert not isinstance(answer, GatewayError), answer
    # README: original_size is [width, height] as displayed, whatever the format.
    assert answer.original_size == (UPRIGHT_WIDTH, UPRIGHT_HEIGHT)
    quarter, three_quarters = 224 // 4, 224 * 3 // 4
    seen = {
        "top-left": answer.pixels[quarter, quarter],
        "top-right": answer.pixels[quarter, three_quarters],
        "bottom-left": answer.pixels[three_quarters, quarter],
        "bottom-right": answer.pixels[three_quarters, three_quarters],
    }
    for corner, colour in QUADRANTS.items():
        difference = np.abs(seen[corner].astype(int) - colour).max()
        assert difference < 40, (corner, seen[corner].tolist(), colour)


TRANSPARENT_COMBINATIONS = [
    ("PNG", "LA"),
    ("PNG", "RGBA"),
    ("PNG", "P+t"),
    ("GIF", "P+t"),
    ("WEBP", "LA"),
    ("WEBP", "RGBA"),
    ("TIFF", "LA"),
    ("TIFF", "La"),
    ("TIFF", "PA"),
    ("TIFF", "RGBA"),
]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TRANSPARENT_COMBINATIONS), st.integers(1, 32), st.integers(1, 32))
def test_fully_transparent_pixels_become_white(
    combination: tuple[str, str], width: int, height: int
) -> None:
    fmt, mode = combination
    if mode == "P+t":
        image = Image.new("P", (width, height), 0)
        image.putpalette([0, 0, 0] * 256)
    else:
        image = Image.new(mode, (width, height), (0,) * len(mode))
    answer = prepare(encode(image, fmt, mode, None))
    assert not isinstance(answer, GatewayError), answer
    assert answer.pixels.min() == 255


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["PNG", "TIFF"]), st.integers(0, 65535), st.integers(1, 32))
def test_sixteen_bit_greys_keep_their_high_byte(fmt: str, value: int, side: int) -> None:
    raw = np.full((side, side), value, dtype="<u2").tobytes()
    answer = prepare(encode(Image.frombytes("I;16", (side, side), raw), fmt, "I;16", None))
    assert not isinstance(answer, GatewayError), answer
    assert set(np.unique(answer.pixels).tolist()) == {value >> 8}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["I", "F"]),
    st.integers(-(2**31), 2**31 - 2),
    st.integers(1, 2**31 - 1),
)
def test_wide_greys_are_stretched_from_their_minimum_to_their_maximum(
    mode: str, low: int, spread: int
) -> None:
    high = min(low + spread, 2**31 - 1)
    values = np.zeros((16, 16), dtype=np.int32 if mode == "I" else np.float32)
    values[:, :8] = low
    values[:, 8:] = high
    if mode == "F" and np.float32(low) == np.float32(high):
        return  # float32 cannot tell these two apart: one grey, nothing to stretch
    image = Image.frombytes(mode, (16, 16), values.tobytes())
    answer = prepare(encode(image, "TIFF", mode, None))
    assert not isinstance(answer, GatewayError), answer
    assert answer.pixels.min() == 0
    assert answer.pixels.max() == 255
