"""Photographs and decoding edge cases for the accuracy tests, and the plain reference pipeline.

Every case is made here, deterministically, from the CC0 and public-domain
photographs in modelexport/photos/ and test/photos/ (see test/IMAGES.md), so
the repository carries four small files instead of fifteen. The reference is
what a careful person would do by hand: full decode (no JPEG draft), EXIF
orientation applied, transparency composited over white, LANCZOS straight to
the model's input size.
"""

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from processes import ROOT

PHOTOS = {
    "chelsea": ROOT / "modelexport" / "photos" / "chelsea.png",
    "coffee": ROOT / "modelexport" / "photos" / "coffee.png",
    "camera": ROOT / "test" / "photos" / "camera.png",
    "rocket": ROOT / "test" / "photos" / "rocket.jpg",
}
MODEL_SIZE = (224, 224)
_WHITE = (255, 255, 255)
_EXIF_ORIENTATION = 0x0112


def photo(name: str) -> Image.Image:
    with Image.open(PHOTOS[name]) as image:
        return image.convert("RGB")


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **options)
    return out.getvalue()


def exif_rotated_jpeg() -> bytes:
    """Stored on its side, EXIF orientation 6 (turn 90° clockwise to display) puts it upright."""
    stored = photo("chelsea").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = 6
    return encode(stored, "JPEG", quality=92, exif=exif.tobytes())


def cmyk_jpeg() -> bytes:
    return encode(photo("coffee").convert("CMYK"), "JPEG", quality=92)


def grey16_png() -> bytes:
    grey = np.asarray(photo("camera").convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def rgba_png() -> bytes:
    """The cat with a soft-edged transparent frame: alpha falls off towards the borders."""
    cat = photo("chelsea")
    height, width = cat.height, cat.width
    y, x = np.mgrid[0:height, 0:width]
    edge = np.minimum.reduce([x, y, width - 1 - x, height - 1 - y]).astype(np.float64)
    alpha = np.clip(edge * 255.0 / 40.0, 0, 255).astype(np.uint8)
    rgba = cat.copy()
    rgba.putalpha(Image.fromarray(alpha))
    return encode(rgba, "PNG")


def dithered_palette_png() -> bytes:
    """64 colours with Floyd-Steinberg dithering, one palette entry transparent."""
    palette = photo("chelsea").quantize(colors=64, dither=Image.Dither.FLOYDSTEINBERG)
    counts = np.bincount(np.asarray(palette).ravel(), minlength=64)
    rarest_used = int(np.argmin(np.where(counts > 0, counts, counts.max() + 1)))
    return encode(palette, "PNG", transparency=rarest_used)


def animated_gif() -> bytes:
    """Two frames: the cat first (the gateway classifies the first frame), then the coffee."""
    cat = photo("chelsea")
    coffee = photo("coffee").resize(cat.size)
    return encode(cat, "GIF", save_all=True, append_images=[coffee], duration=200, loop=0)


def twelve_megapixel_jpeg() -> bytes:
    """The cat enlarged to 4256x2832 (12 MP) with faint sensor-like noise, as a phone saves it."""
    big = photo("chelsea").resize((4256, 2832), Image.Resampling.LANCZOS)
    noise = np.random.default_rng(7).normal(0.0, 3.0, (2832, 4256, 3))
    noisy = np.clip(np.asarray(big, dtype=np.float64) + noise, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(noisy), "JPEG", quality=90)


CASES: dict[str, Callable[[], bytes]] = {
    "chelsea.png": lambda: PHOTOS["chelsea"].read_bytes(),
    "coffee.png": lambda: PHOTOS["coffee"].read_bytes(),
    "camera.png (512x512 grey)": lambda: PHOTOS["camera"].read_bytes(),
    "rocket.jpg (640x427)": lambda: PHOTOS["rocket"].read_bytes(),
    "chelsea, EXIF-rotated JPEG": exif_rotated_jpeg,
    "coffee, CMYK JPEG": cmyk_jpeg,
    "camera, 16-bit grey PNG": grey16_png,
    "chelsea, RGBA PNG": rgba_png,
    "chelsea, dithered palette PNG with transparency": dithered_palette_png,
    "chelsea, animated GIF": animated_gif,
    "coffee, WebP": lambda: encode(photo("coffee"), "WEBP", quality=85),
    "rocket, BMP": lambda: encode(photo("rocket"), "BMP"),
    "camera, TIFF": lambda: encode(photo("camera"), "TIFF", compression="tiff_deflate"),
    "chelsea, 12 MP JPEG": twelve_megapixel_jpeg,
}


def reference_pixels(data: bytes, size: tuple[int, int] = MODEL_SIZE) -> np.ndarray:
    """The plain pipeline: full decode, orientation, alpha over white, LANCZOS to `size`."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image = ImageOps.exif_transpose(opened)
    if image.mode in ("I;16", "I;16L", "I;16B"):
        scaled = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.round(scaled).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*_WHITE, 255)), rgba)
    rgb = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(rgb, dtype=np.uint8)


def write_cases(folder: Path) -> dict[str, Path]:
    """Write every case into `folder` (for a person to look at); returns name -> file."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for index, (name, build) in enumerate(CASES.items()):
        path = folder / f"{index:02d}.bin"
        path.write_bytes(build())
        written[name] = path
    return written
