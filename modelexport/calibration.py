"""Real photographs as the int8 model sees them: one set calibrates it, another judges it.

Full-integer quantisation fixes each tensor's int8 range from example inputs, so the
examples must look like what the gateway will be sent: real photographs, not noise.
Few photographs may be redistributed (photo_library.py), so each is used many times:
random crops (a quarter of the picture to all of it, any aspect), mirrored half the
time, brightness and contrast moved by up to 25 %. The judging set is every photograph
whole plus crops drawn with another seed, so it never repeats a calibration input
(the photographs themselves are shared: there are not enough to split).

Images are resized to the model's 224x224 with Pillow's Lanczos filter, as close to
the gateway's own resize (gateway/resize.py) as Pillow gets.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance

from modelexport.contract import IMAGE_SIZE
from modelexport.photo_library import LIBRARY_PHOTOS, LibraryPhoto, load_rgb

CALIBRATION_SEED = 20261201
EVALUATION_SEED = 7
CALIBRATION_IMAGES = 240
EVALUATION_CROPS_PER_PHOTO = 7
SMALLEST_CROP_SIDE = 0.5  # of the photograph's side: a crop keeps at least a quarter
MAX_LIGHTING_CHANGE = 0.25


@dataclass(frozen=True)
class JudgedImage:
    """One evaluation input and where it came from ("whole" or the crop's box)."""

    photo: LibraryPhoto
    view: str
    pixels: np.ndarray  # uint8 [224, 224, 3]


def to_model_input(image: Image.Image) -> np.ndarray:
    """Resize to the model's square input; uint8 [224, 224, 3]."""
    resized = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


def random_view(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """A random crop of image, maybe mirrored and re-lit, and a short description of it."""
    width, height = image.size
    crop_width = int(width * rng.uniform(SMALLEST_CROP_SIDE, 1.0))
    crop_height = int(height * rng.uniform(SMALLEST_CROP_SIDE, 1.0))
    left = int(rng.integers(0, width - crop_width + 1))
    top = int(rng.integers(0, height - crop_height + 1))
    view = image.crop((left, top, left + crop_width, top + crop_height))
    description = f"crop {crop_width}x{crop_height}+{left}+{top}"
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        description += " mirrored"
    brightness = 1.0 + rng.uniform(-MAX_LIGHTING_CHANGE, MAX_LIGHTING_CHANGE)
    contrast = 1.0 + rng.uniform(-MAX_LIGHTING_CHANGE, MAX_LIGHTING_CHANGE)
    view = ImageEnhance.Contrast(ImageEnhance.Brightness(view).enhance(brightness)).enhance(
        contrast
    )
    return view, f"{description} brightness {brightness:.2f} contrast {contrast:.2f}"


def representative_images(count: int = CALIBRATION_IMAGES) -> Iterator[np.ndarray]:
    """Yield count calibration inputs, uint8 [1, 224, 224, 3], cycling through the photos."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    photos = [load_rgb(photo) for photo in LIBRARY_PHOTOS]
    for index in range(count):
        view, _ = random_view(photos[index % len(photos)], rng)
        yield to_model_input(view)[np.newaxis]


def evaluation_images(crops_per_photo: int = EVALUATION_CROPS_PER_PHOTO) -> list[JudgedImage]:
    """Every library photograph whole, then crops_per_photo views of each (another seed)."""
    rng = np.random.default_rng(EVALUATION_SEED)
    judged = []
    for photo in LIBRARY_PHOTOS:
        image = load_rgb(photo)
        judged.append(JudgedImage(photo, "whole", to_model_input(image)))
        for _ in range(crops_per_photo):
            view, description = random_view(image, rng)
            judged.append(JudgedImage(photo, description, to_model_input(view)))
    return judged
