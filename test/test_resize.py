"""The model-input resize: OpenCV's fast path and Pillow's wide filter, both near LANCZOS."""

import numpy as np
import pytest
from PIL import Image

from gateway.resize import MAX_FAST_SHRINK, resize_rgb

SIZE = (224, 224)


def fine_texture(width: int, height: int) -> Image.Image:
    """Stripes close to the pixel pitch plus seeded noise: what aliasing shows up on."""
    rows, columns = np.mgrid[0:height, 0:width]
    stripes = 127 + 60 * np.sin(columns * 0.9) + 60 * np.cos(rows * 0.7)
    noise = np.random.default_rng(7).integers(0, 64, (height, width))
    channels = [stripes, np.roll(stripes, 3, axis=1), stripes / 2 + noise]
    return Image.fromarray(np.clip(np.dstack(channels), 0, 255).astype(np.uint8))


def psnr_db(ours: np.ndarray, reference: np.ndarray) -> float:
    error = np.mean((ours.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (480, 360),  # a JPEG after draft decoding: the fast path
        (640, 480),  # shrink 2.9, still the fast path
        (700, 300),  # shrink 3.1: Pillow's filter
        (1000, 1000),  # shrink 4.5: 2-tap sampling would give about 17 dB here
    ],
)
def test_both_paths_stay_close_to_lanczos_on_fine_texture(width: int, height: int) -> None:
    image = fine_texture(width, height)
    reference = np.asarray(image.resize(SIZE, Image.Resampling.LANCZOS))
    assert psnr_db(resize_rgb(image, SIZE), reference) > 28.0


def test_the_fast_path_covers_a_phone_photo_after_draft_decoding() -> None:
    # 4032x3024 decodes at 1/8 scale to 504x378: 2.25 times the model's width.
    assert 504 / SIZE[0] < MAX_FAST_SHRINK


@pytest.mark.parametrize(("width", "height"), [(3, 2), (224, 224), (2000, 90)])
def test_output_is_uint8_rows_by_columns_of_the_requested_size(width: int, height: int) -> None:
    pixels = resize_rgb(fine_texture(width, height), (30, 20))
    assert pixels.shape == (20, 30, 3)
    assert pixels.dtype == np.uint8
    assert pixels.flags.c_contiguous


def test_a_flat_colour_stays_that_colour() -> None:
    for width in (300, 2000):  # one size for each path
        pixels = resize_rgb(Image.new("RGB", (width, 300), (12, 200, 77)), SIZE)
        assert np.all(pixels == np.array([12, 200, 77], dtype=np.uint8))
