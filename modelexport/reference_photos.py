"""Photographs a version with real ImageNet weights must classify right before it is published.

Both come from scikit-image 0.26.0 and are CC0 (see photos/IMAGES.md). Each is resized
straight to 224x224 (no crop, so the aspect ratio changes) with Pillow's bilinear
filter; the expected classes were measured that way.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from modelexport.contract import IMAGE_SIZE

PHOTOS_DIR = Path(__file__).with_name("photos")


@dataclass(frozen=True)
class ReferencePhoto:
    """A photograph and the class id (1001 classes, background 0) it must be given."""

    file: Path
    expected_class: int

    @property
    def name(self) -> str:
        """The file name, which is how the exporter's report refers to the photograph."""
        return self.file.name


# Class ids are lines of imagenet_labels.txt: ImageNet-1k's index plus one.
CHELSEA = ReferencePhoto(PHOTOS_DIR / "chelsea.png", expected_class=286)  # Egyptian cat
COFFEE = ReferencePhoto(PHOTOS_DIR / "coffee.png", expected_class=968)  # espresso
IMAGENET_PHOTOS = (CHELSEA, COFFEE)


def load_photo(photo: ReferencePhoto) -> np.ndarray:
    """Return the photograph as uint8 RGB [224, 224, 3], resized with Pillow's bilinear filter."""
    with Image.open(photo.file) as image:
        resized = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def photo_batch(photos: Sequence[ReferencePhoto]) -> np.ndarray:
    """Return the photographs as one uint8 batch [len(photos), 224, 224, 3]."""
    return np.stack([load_photo(photo) for photo in photos])
