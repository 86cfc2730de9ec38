"""The model-input resize: a Lanczos low-pass and bicubic sampling, close to Pillow's LANCZOS."""

import numpy as np
import pytest
from PIL import Image

from gateway.resize import REDUCING_GAP, lanczos_taps, resize_rgb

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
        (480, 360),  # a JPEG after draft decoding
        (640, 480),  # shrink 2.9
        (700, 300),  # shrink 3.1: a box reduction by 1 on x, none on y
        (1000, 1000),  # shrink 4.5: 2-tap sampling alone would give about 17 dB here
        (2000, 1500),  # shrink 8.9: box-reduced by 2 first
        (150, 100),  # enlarged: bicubic only
    ],
)
def test_it_stays_close_to_lanczos_on_fine_texture(width: int, height: int) -> None:
    image = fine_texture(width, height)
    reference = np.asarray(image.resize(SIZE, Image.Resampling.LANCZOS))
    assert psnr_db(resize_rgb(image, SIZE), reference) > 30.0


@pytest.mark.parametrize("shrink", [1.3, 2.14, 2.9, 5.7])
def test_the_low_pass_is_a_normalised_symmetric_lanczos(shrink: float) -> None:
    taps = lanczos_taps(shrink)
    assert taps is not None
    assert taps.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(taps, taps[::-1])
    assert len(taps) == 2 * int(np.ceil(3 * shrink)) + 1
    assert taps.argmax() == len(taps) // 2


def test_enlarging_needs_no_low_pass() -> None:
    assert lanczos_taps(1.0) is None
    assert lanczos_taps(0.4) is None


def test_a_huge_shrink_is_box_reduced_first() -> None:
    # 40x wider than the output: filtering 240 taps per pixel at full size would be slow.
    assert REDUCING_GAP >= 2.0
    wide = fine_texture(224 * 40, 224)
    reference = np.asarray(wide.resize(SIZE, Image.Resampling.LANCZOS))
    assert psnr_db(resize_rgb(wide, SIZE), reference) > 30.0


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
