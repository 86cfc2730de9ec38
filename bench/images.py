"""The benchmark's uploads, made from test/cat.jpg: a 480x360 JPEG and a 12-megapixel one.

Upscaling a small photograph gives an unnaturally smooth picture that JPEG
squeezes to a third of a phone photo's size, so both get a light, seeded
camera-like grain: the 12 MP file comes out near 2.7 MB, like the real thing,
and the upload, multipart parsing and entropy decoding cost what they would.
"""

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

CAT_JPEG = Path(__file__).resolve().parent.parent / "test" / "cat.jpg"
SMALL_SIZE = (480, 360)
LARGE_SIZE = (4000, 3000)
_GRAIN_SIGMA = 6.0
_QUALITY = 90


@dataclass(frozen=True)
class Upload:
    """One JPEG to send, with the name the tables use for it."""

    name: str
    size: tuple[int, int]
    data: bytes


def make_jpeg(
    size: tuple[int, int], source: Path = CAT_JPEG, seed: int = 0, grain_sigma: float = _GRAIN_SIGMA
) -> bytes:
    """`source` cropped to the aspect of `size`, resized with LANCZOS, grained, saved as JPEG."""
    with Image.open(source) as original:
        picture = ImageOps.fit(original.convert("RGB"), size, Image.Resampling.LANCZOS)
    pixels = np.asarray(picture, dtype=np.float32)
    grain = np.random.default_rng(seed).normal(0.0, grain_sigma, pixels.shape)
    grained = Image.fromarray(np.clip(np.rint(pixels + grain), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    grained.save(buffer, format="JPEG", quality=_QUALITY)
    return buffer.getvalue()


def make_uploads() -> dict[str, Upload]:
    """Both benchmark images, keyed by their table name."""
    small = Upload("480x360", SMALL_SIZE, make_jpeg(SMALL_SIZE))
    large = Upload("12 MP", LARGE_SIZE, make_jpeg(LARGE_SIZE))
    return {small.name: small, large.name: large}


def make_smooth_large() -> Upload:
    """The 12 MP picture without grain: what JPEG decoding costs when the file is small."""
    return Upload("12 MP, no grain", LARGE_SIZE, make_jpeg(LARGE_SIZE, grain_sigma=0.0))
