"""Upload bytes to model input: formats sniffed, limits enforced, modes normalised."""

import io
import struct
import time
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from gateway.decode_budget import BAND_PIXELS
from gateway.errors import (
    CorruptImage,
    DeadlineExceeded,
    DecodeTooLarge,
    EmptyFile,
    NotAnImage,
    TooManyPixels,
    UnsupportedFormat,
)
from gateway.imaging import prepare_image
from gateway.rgb import to_rgb

SIZE = (224, 224)
LIMIT = 40_000_000


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    red = np.tile(x, (height, 1))
    green = np.tile(y[:, None], (1, width))
    blue = np.full((height, width), 128, dtype=np.uint8)
    return Image.fromarray(np.dstack([red, green, blue]))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_every_accepted_format_becomes_a_224_rgb_tensor(fmt: str) -> None:
    prepared = prepare_image(encode(gradient(), fmt), SIZE, LIMIT)
    assert prepared.pixels.shape == (224, 224, 3)
    assert prepared.pixels.dtype == np.uint8
    assert prepared.original_size == (64, 48)
    assert prepared.format == fmt


def test_format_comes_from_the_bytes_not_the_name(cat_jpeg: bytes) -> None:
    assert prepare_image(cat_jpeg, SIZE, LIMIT).format == "JPEG"


def test_empty_upload_is_refused() -> None:
    with pytest.raises(EmptyFile):
        prepare_image(b"", SIZE, LIMIT)


def test_text_is_not_an_image() -> None:
    with pytest.raises(NotAnImage, match="JPEG"):
        prepare_image(b"%PDF-1.4 not a picture at all", SIZE, LIMIT)


def test_a_format_pillow_knows_but_we_do_not_accept_is_named() -> None:
    with pytest.raises(UnsupportedFormat, match="ICO"):
        prepare_image(encode(gradient(32, 32), "ICO"), SIZE, LIMIT)


def test_truncated_jpeg_is_corrupt(cat_jpeg: bytes) -> None:
    with pytest.raises(CorruptImage):
        prepare_image(cat_jpeg[: len(cat_jpeg) // 2], SIZE, LIMIT)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_from_the_header() -> None:
    data = bomb_png(50_000, 50_000)
    assert len(data) < 5_000
    with pytest.raises(TooManyPixels, match="50000x50000"):
        prepare_image(data, SIZE, LIMIT)


def test_exif_orientation_is_applied() -> None:
    wide = gradient(80, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encode(wide, "JPEG", exif=exif.tobytes())
    rotated = prepare_image(data, (40, 80), LIMIT).pixels
    plain = prepare_image(
        encode(wide.transpose(Image.Transpose.ROTATE_270), "JPEG"), (40, 80), LIMIT
    )
    assert np.abs(rotated.astype(int) - plain.pixels.astype(int)).mean() < 6


def test_transparent_pixels_become_white() -> None:
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    solid = Image.new("LA", (16, 16), (40, 255))
    assert to_rgb(solid).getpixel((0, 0)) == (40, 40, 40)


def test_palette_with_transparency_becomes_white() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.info["transparency"] = 0
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grey_keeps_its_high_byte() -> None:
    image = Image.fromarray(np.full((4, 4), 0x8000, dtype=np.uint16))
    assert to_rgb(image).getpixel((0, 0)) == (128, 128, 128)


def test_cmyk_is_converted() -> None:
    image = Image.new("CMYK", (8, 8), (0, 255, 255, 0))
    red, green, blue = to_rgb(image).getpixel((0, 0))
    assert red > 200
    assert max(green, blue) < 60


def test_animated_gif_uses_its_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    pixels = prepare_image(buffer.getvalue(), (8, 8), LIMIT).pixels
    assert pixels[0, 0, 0] > 200
    assert pixels[0, 0, 2] < 50


def psnr_db(ours: np.ndarray, reference: np.ndarray) -> float:
    error = np.mean((ours.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


@pytest.mark.parametrize(
    ("scale", "fmt"),
    [
        (1, "JPEG"),  # 451x300: OpenCV's bilinear, shrink 2.0
        (9, "JPEG"),  # 4059x2700, drafted to 1/8: OpenCV's bilinear, shrink 2.3
        (2, "PNG"),  # 902x600, no draft: Pillow's wide filter, shrink 4.0
    ],
)
def test_fast_resize_stays_close_to_a_full_lanczos_reference(
    cat_jpeg: bytes, scale: int, fmt: str
) -> None:
    # The speed path (JPEG draft decoding at reduced scale, then bilinear) must
    # look like the slow reference: a full decode and a LANCZOS resize.
    source = Image.open(io.BytesIO(cat_jpeg)).convert("RGB")
    options = {"quality": 90} if fmt == "JPEG" else {}
    data = encode(source.resize((source.width * scale, source.height * scale)), fmt, **options)
    reference = Image.open(io.BytesIO(data)).convert("RGB")
    expected = np.asarray(reference.resize(SIZE, Image.Resampling.LANCZOS))
    assert psnr_db(prepare_image(data, SIZE, LIMIT).pixels, expected) > 35.0


def reference_rgb(image: Image.Image) -> np.ndarray:
    """The documented conversions done on the whole picture at once, as they were first written."""
    if image.mode in ("I;16", "I;16B"):
        grey = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
        return np.asarray(Image.fromarray(grey).convert("RGB"))
    if image.mode in ("I", "F"):
        values = np.nan_to_num(
            np.asarray(image).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0
        )
        low, high = values.min(), values.max()
        stretched = np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
        return np.asarray(Image.fromarray(stretched).convert("RGB"))
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"))


def noise(width: int, height: int, channels: int, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def awkward_float(width: int, height: int) -> Image.Image:
    values = noise(width, height, 1)[:, :, 0].astype(np.float32) * 1000.5 - 3e4
    values[0, :3] = (np.nan, np.inf, -np.inf)
    return Image.fromarray(values)


BAND_MODES = {
    "RGBA": lambda w, h: Image.fromarray(noise(w, h, 4)),
    "LA": lambda w, h: Image.fromarray(noise(w, h, 4)).convert("LA"),
    "P with transparency": lambda w, h: palette_with_transparency(w, h),
    "I;16": lambda w, h: Image.fromarray(noise(w, h, 2).view(np.uint16)[:, :, 0]),
    "I": lambda w, h: Image.fromarray(noise(w, h, 4).view(np.int32)[:, :, 0]),
    "F with NaN and infinities": awkward_float,
}


def palette_with_transparency(width: int, height: int) -> Image.Image:
    image = Image.fromarray(noise(width, height, 3)).convert("P")
    image.info["transparency"] = 3
    return image


@pytest.mark.parametrize("mode", list(BAND_MODES))
@pytest.mark.parametrize(
    ("width", "height"),
    [
        (700, 500),  # several bands of whole rows
        (BAND_PIXELS + 1000, 3),  # rows wider than a band: split across too
    ],
)
def test_converting_in_bands_gives_exactly_the_whole_picture_conversion(
    mode: str, width: int, height: int
) -> None:
    image = BAND_MODES[mode](width, height)
    assert width * height > BAND_PIXELS
    np.testing.assert_array_equal(np.asarray(to_rgb(image)), reference_rgb(image))


def test_nothing_starts_once_the_deadline_has_passed(cat_jpeg: bytes) -> None:
    with pytest.raises(DeadlineExceeded):
        prepare_image(cat_jpeg, SIZE, LIMIT, deadline=time.monotonic() - 0.001)


def test_a_decode_stops_soon_after_its_deadline() -> None:
    data = encode(Image.fromarray(noise(3000, 3000, 4)), "PNG", compress_level=1)
    started = time.monotonic()
    prepare_image(data, SIZE, LIMIT)
    whole = time.monotonic() - started
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        prepare_image(data, SIZE, LIMIT, deadline=started + whole / 10)
    assert time.monotonic() - started < whole / 2


def tiff_in_strips(strips: int, width: int = 16) -> bytes:
    """An uncompressed grey TIFF whose every one-row strip points at the same row."""
    entries = 9
    offsets_at = 8 + 2 + 12 * entries + 4
    counts_at = offsets_at + 4 * strips
    row_at = counts_at + 4 * strips
    fields = [
        (256, 4, 1, width),
        (257, 4, 1, strips),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, strips, offsets_at),
        (277, 3, 1, 1),
        (278, 4, 1, 1),
        (279, 4, strips, counts_at),
    ]
    directory = struct.pack("<H", entries) + b"".join(
        struct.pack(
            "<HHII" if kind == 4 else "<HHIHH", tag, kind, n, value, *([] if kind == 4 else [0])
        )
        for tag, kind, n, value in fields
    )
    tables = struct.pack(f"<{strips}I", *[row_at] * strips)
    tables += struct.pack(f"<{strips}I", *[width] * strips)
    return (
        b"II*\x00" + struct.pack("<I", 8) + directory + struct.pack("<I", 0) + tables + bytes(width)
    )


def test_a_tiff_in_a_million_strips_is_refused_before_pillow_reads_it() -> None:
    data = tiff_in_strips(1_200_000)
    started = time.monotonic()
    with pytest.raises(DecodeTooLarge, match="1,200,000 strips"):
        prepare_image(data, SIZE, LIMIT)
    assert time.monotonic() - started < 0.5
    assert prepare_image(tiff_in_strips(1000), SIZE, LIMIT).original_size == (16, 1000)


@pytest.mark.parametrize("order", [b"II+\x00\x08\x00\x00\x00", b"MM\x00+\x00\x08\x00\x00"])
def test_a_bigtiff_directory_beyond_any_file_is_corrupt(order: bytes) -> None:
    # An offset past 2**63 made struct raise OverflowError: a 500, not a 422.
    with pytest.raises(CorruptImage, match="TIFF"):
        prepare_image(order + b"\xf2" * 8 + bytes(64), SIZE, LIMIT)


def test_png_text_beyond_4_mib_is_refused_as_the_header_is_read() -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    # 250,000 characters (1 MB of UTF-8, as much as a str) from 3 KB, 20 times over.
    words = zlib.compress(("\U0001f600" * 250_000).encode(), 9)
    texts = b"".join(chunk(b"iTXt", b"k%d\x00\x01\x00\x00\x00" % i + words) for i in range(20))
    png = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    png[33:33] = texts  # after the 8-byte signature and the 25-byte IHDR chunk
    assert len(png) < 80_000
    with pytest.raises(CorruptImage, match="text"):
        prepare_image(bytes(png), SIZE, LIMIT)


def raw_tiff(
    pixels: np.ndarray,
    photometric: int,
    extra_samples: tuple[int, ...] = (),
    compression: int = 1,
) -> bytes:
    """A little-endian TIFF of `pixels` (rows, columns[, samples]) in one uncompressed strip.

    Bits per sample and the sample format (unsigned, signed, float) follow the dtype.
    """
    height, width = pixels.shape[:2]
    samples = pixels.shape[2] if pixels.ndim == 3 else 1
    strip = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    sample_format = {"u": 1, "i": 2, "f": 3}[pixels.dtype.kind]
    fields: dict[int, tuple[str, list[int]]] = {
        256: ("I", [width]),
        257: ("I", [height]),
        258: ("H", [pixels.dtype.itemsize * 8] * samples),
        259: ("H", [compression]),
        262: ("H", [photometric]),
        273: ("I", [0]),  # the strip's offset, known once the directory's size is
        277: ("H", [samples]),
        278: ("I", [height]),
        279: ("I", [len(strip)]),
        339: ("H", [sample_format] * samples),
    }
    if extra_samples:
        fields[338] = ("H", list(extra_samples))
    strip_at = 8 + 2 + 12 * len(fields) + 4
    fields[273] = ("I", [strip_at])
    directory, values = struct.pack("<H", len(fields)), b""
    for tag, (kind, numbers) in sorted(fields.items()):
        packed = struct.pack(f"<{len(numbers)}{kind}", *numbers)
        if len(packed) > 4:  # stored after the strip; the entry holds its offset
            packed, values = struct.pack("<I", strip_at + len(strip) + len(values)), values + packed
        directory += struct.pack("<HHI", tag, 3 if kind == "H" else 4, len(numbers))
        directory += packed.ljust(4, b"\x00")
    return b"II*\x00" + struct.pack("<I", 8) + directory + struct.pack("<I", 0) + strip + values


def premultiplied_grey(colour: int, alpha: int, side: int = 8) -> bytes:
    pixels = np.full((side, side, 2), (colour, alpha), dtype=np.uint8)
    return raw_tiff(pixels, photometric=1, extra_samples=(1,))  # 1: associated alpha


@pytest.mark.parametrize(
    ("colour", "alpha", "expected"),
    [
        (40, 100, 195),  # 40 + (255 - 100)
        (0, 0, 255),  # fully transparent: white
        (90, 255, 90),  # opaque: the colour itself
        (128, 128, 255),  # white at half coverage
    ],
)
def test_a_grey_tiff_with_premultiplied_alpha_is_composited_over_white(
    colour: int, alpha: int, expected: int
) -> None:
    assert Image.open(io.BytesIO(premultiplied_grey(colour, alpha))).mode == "La"
    prepared = prepare_image(premultiplied_grey(colour, alpha), SIZE, LIMIT)
    assert prepared.format == "TIFF"
    assert prepared.original_size == (8, 8)
    assert set(np.unique(prepared.pixels).tolist()) == {expected}


@pytest.mark.parametrize("mode", ["La", "RGBa"])
def test_premultiplied_alpha_over_white_is_colour_plus_the_uncovered_white(mode: str) -> None:
    colour, alpha = np.meshgrid(np.arange(256), np.arange(256))
    valid = colour <= alpha  # premultiplied colour never exceeds its alpha
    colour, alpha = colour[valid].astype(np.uint8), alpha[valid].astype(np.uint8)
    bands = [colour] * (len(mode) - 1) + [alpha]
    image = Image.frombytes(mode, (colour.size, 1), np.stack(bands, axis=-1).tobytes())
    expected = colour.astype(int) + 255 - alpha
    rgb = np.asarray(to_rgb(image))[0]
    assert (rgb == expected[:, None]).all()
    # The same as undoing the premultiplication, then compositing straight alpha over white.
    straight = np.round(colour * 255.0 / np.maximum(alpha, 1))
    composited = np.round(straight * alpha / 255.0 + 255 - alpha)
    assert np.abs(rgb[:, 0] - composited).max() <= 1


# Every mode Pillow gives the accepted formats' pictures (TIFF's La, PA, LAB and
# YCbCr, PNG's I;16, BMP's RGBX...), and HSV, which Pillow can make from any of them.
PILLOW_MODES = [
    *("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX"),
    *("CMYK", "YCbCr", "LAB", "HSV", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"),
]


@pytest.mark.parametrize("mode", PILLOW_MODES)
def test_every_pillow_mode_becomes_rgb(mode: str) -> None:
    size = (40, 30)
    raw = np.random.default_rng(3).bytes(len(Image.new(mode, size).tobytes()))
    rgb = to_rgb(Image.frombytes(mode, size, raw))
    assert rgb.mode == "RGB"
    assert rgb.size == size


def test_signalling_nans_in_a_float_grey_count_as_zero() -> None:
    # Float TIFFs from instruments hold any NaN; casting a signalling one warns.
    bits = np.array([[0x7F800001, 0x3F800000, 0x40000000]], dtype=np.uint32)
    image = Image.frombytes("F", (3, 1), bits.view(np.float32).tobytes())
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize(
    ("name", "pixels", "photometric", "extra_samples", "described"),
    [
        ("half-float grey", np.zeros((6, 5), np.float16), 1, (), "1 sample per pixel, 16-bit"),
        ("double grey", np.zeros((6, 5), np.float64), 1, (), "64-bit floating point"),
        ("16-bit grey+alpha", np.zeros((6, 5, 2), np.uint16), 1, (2,), "2 samples per pixel"),
        ("float RGB", np.zeros((6, 5, 3), np.float32), 2, (), "32-bit floating point"),
        ("CMYK+alpha", np.zeros((6, 5, 5), np.uint8), 5, (2,), "5 samples per pixel"),
        ("RGB + 4 extra", np.zeros((6, 5, 7), np.uint8), 2, (0,) * 4, "7 samples per pixel"),
    ],
)
def test_a_valid_tiff_pillow_cannot_decode_is_an_unsupported_tiff_variant(
    name: str,
    pixels: np.ndarray,
    photometric: int,
    extra_samples: tuple[int, ...],
    described: str,
) -> None:
    data = raw_tiff(pixels, photometric, extra_samples)
    with pytest.raises(UnsupportedFormat, match="TIFF variant is not supported") as refused:
        prepare_image(data, SIZE, LIMIT)
    assert described in refused.value.detail
    assert "send one of" not in refused.value.detail


def test_a_tiff_in_a_compression_pillow_lacks_is_an_unsupported_tiff_variant() -> None:
    data = raw_tiff(np.zeros((6, 5), np.uint8), 1, compression=34712)  # JPEG 2000
    with pytest.raises(UnsupportedFormat, match=r"TIFF variant .*compression 34712"):
        prepare_image(data, SIZE, LIMIT)


def test_a_tiff_cut_short_in_its_directory_is_corrupt_not_an_unsupported_variant() -> None:
    whole = raw_tiff(np.zeros((6, 5, 3), np.float32), 2)
    with pytest.raises(UnsupportedFormat):
        prepare_image(whole, SIZE, LIMIT)
    # Cut inside the sample formats stored last: Pillow reads the samples as
    # unsigned, names no mode for that and says "unknown pixel mode", but the
    # cut is what is wrong with this file.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns of the cut; production only logs it
        with pytest.raises(CorruptImage, match="TIFF image is cut short") as refused:
            prepare_image(whole[:-4], SIZE, LIMIT)
    assert "unknown pixel mode" in refused.value.detail


def test_a_twelve_bit_jpeg_is_an_unsupported_jpeg_variant(cat_jpeg: bytes) -> None:
    frame = cat_jpeg.index(b"\xff\xc0")
    data = bytearray(cat_jpeg)
    data[frame + 1], data[frame + 4] = 0xC1, 12  # extended sequential, 12-bit samples
    with pytest.raises(UnsupportedFormat, match=r"JPEG variant .*12-bit"):
        prepare_image(bytes(data), SIZE, LIMIT)


def test_a_jpeg_compressed_bmp_is_an_unsupported_bmp_variant() -> None:
    data = bytearray(encode(gradient(8, 8), "BMP"))
    struct.pack_into("<I", data, 30, 4)  # BI_JPEG
    with pytest.raises(UnsupportedFormat, match=r"BMP variant .*compression"):
        prepare_image(bytes(data), SIZE, LIMIT)


@pytest.mark.parametrize(
    ("fmt", "keep"),
    [("PNG", 20), ("GIF", 8), ("JPEG", 30), ("BMP", 20), ("TIFF", 12), ("WEBP", 16)],
)
def test_an_accepted_signature_on_a_broken_header_is_a_corrupt_image(fmt: str, keep: int) -> None:
    with pytest.raises(CorruptImage, match=f"The {fmt} image"):
        prepare_image(encode(gradient(), fmt)[:keep], SIZE, LIMIT)


def png_with_a_large_exif_block(block_bytes: int) -> bytes:
    """A 4x4 PNG whose EXIF says "turn 90°" and carries `block_bytes` of tag data."""
    tags = 9
    data_at = 8 + 2 + tags * 12 + 4
    entries = struct.pack("<HHII", 0x0112, 3, 1, 6)  # Orientation: 6
    for n in range(tags - 1):  # eight signed-byte tags sharing one block of data
        entries += struct.pack("<HHII", 0x9000 + n, 6, block_bytes, data_at)
    header = b"II*\x00" + struct.pack("<IH", 8, tags) + entries + b"\x00" * 4
    exif = b"Exif\x00\x00" + header + b"\x9c" * block_bytes
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(out, format="PNG", exif=exif)
    return out.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow on the oversized tags
def test_an_exif_block_larger_than_a_camera_writes_is_ignored_cheaply() -> None:
    # Pillow turns each byte of EXIF into Python objects: 2 MB of it took 98 MiB and 2 s.
    data = png_with_a_large_exif_block(2_000_000)
    tracemalloc.start()
    try:
        prepared = prepare_image(data, (224, 224), 40_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert prepared.pixels.shape == (224, 224, 3)
    assert peak < 16 * 1024 * 1024, f"{peak / 2**20:.0f} MiB"
