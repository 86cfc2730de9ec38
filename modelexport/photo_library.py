"""Real photographs, free to redistribute, for calibrating and evaluating the exported model.

An int8 TensorFlow Lite model is calibrated on example inputs, and its top-1 is compared
with the float model's; both need real camera pictures of varied content rather than
noise or drawings, and the benchmark wants photographs of different subjects. Every
photograph here comes out of a PyPI package under CC0, CC-BY or a public-domain release;
photos/library/IMAGES.md records each one's source, checksum, creator and licence.

Only Pillow is imported (no TensorFlow), so the benchmark (bench/photos.py) can read the
library without the export dependencies.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from modelexport.errors import ExportError

PHOTOS_DIR = Path(__file__).with_name("photos")
LIBRARY_DIR = PHOTOS_DIR / "library"

Subject = Literal[
    "animal",
    "person",
    "vehicle",
    "object",
    "food",
    "plant",
    "building",
    "space",
    "texture",
    "medical",
]

CC0 = "CC0"
PUBLIC_DOMAIN = "public domain"
CC_BY_2 = "CC-BY-2.0"


@dataclass(frozen=True)
class LibraryPhoto:
    """One photograph: where it is, what it shows, and the terms it may be shared under."""

    file: Path
    description: str
    subject: Subject
    licence: str

    @property
    def name(self) -> str:
        """The file name, which is how reports refer to the photograph."""
        return self.file.name


def _in_library(name: str, description: str, subject: Subject, licence: str) -> LibraryPhoto:
    return LibraryPhoto(LIBRARY_DIR / name, description, subject, licence)


# Chelsea and the coffee cup stay where the reference check already keeps them
# (photos/IMAGES.md) rather than being stored twice.
LIBRARY_PHOTOS: tuple[LibraryPhoto, ...] = (
    LibraryPhoto(PHOTOS_DIR / "chelsea.png", "a tabby cat", "animal", CC0),
    LibraryPhoto(PHOTOS_DIR / "coffee.png", "an espresso cup on a saucer", "food", CC0),
    _in_library("astronaut.jpg", "astronaut Eileen Collins in her suit", "person", PUBLIC_DOMAIN),
    _in_library("camera.jpg", "a man at a camera on a tripod (grey)", "person", CC0),
    _in_library("rocket.jpg", "a Falcon 9 rocket lifting off", "vehicle", PUBLIC_DOMAIN),
    _in_library("wall_clock.jpg", "a wall clock, motion-blurred (grey)", "object", PUBLIC_DOMAIN),
    _in_library("dahlia.jpg", "an orange dahlia in front of leaves", "plant", CC_BY_2),
    _in_library("pagoda.jpg", "a Chinese temple tower above a lake", "building", CC_BY_2),
    _in_library(
        "hubble_deep_field.jpg", "galaxies of the Hubble deep field", "space", PUBLIC_DOMAIN
    ),
    _in_library("bricks.jpg", "a brick wall in perspective (grey)", "texture", CC0),
    _in_library("grass.jpg", "grass seen from above (grey)", "texture", CC0),
    _in_library("gravel.jpg", "gravel seen from above (grey)", "texture", CC0),
    _in_library("retina.jpg", "a fundus photograph of a human retina", "medical", CC0),
)


def load_rgb(photo: LibraryPhoto) -> Image.Image:
    """Return the photograph decoded as RGB (grey ones converted), its file closed."""
    with Image.open(photo.file) as image:
        return image.convert("RGB")


def check_library() -> None:
    """Raise ExportError naming every photograph of the library that is missing."""
    missing = [photo.name for photo in LIBRARY_PHOTOS if not photo.file.is_file()]
    if missing:
        raise ExportError(
            f"the photo library ({LIBRARY_DIR}) lacks {', '.join(missing)}: the int8 copy is "
            "calibrated and judged on these photographs; restore them from the repository"
        )
