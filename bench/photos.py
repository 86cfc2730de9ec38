"""Real photographs for the benchmark, as 480x360 JPEGs made at run time.

The benchmark's own 480x360 upload is test/cat.jpg upscaled with added grain,
one picture. Issue 14 asks for real photographs of different content, each
reported on its own: how long a JPEG takes to decode depends on what it shows
(detail, flat areas, colour), so one picture could flatter or wrong the
gateway. These come from the redistributable library the int8 calibration uses
(modelexport/photo_library.py), cropped to 4:3 and resized with LANCZOS, saved
at the same quality as the benchmark's own upload and without grain: they are
real camera pictures already.

Only photographs at least 480x360 natively are used, so no upload is an
upscaled (smoothed) picture; the five picked show different subjects.
"""

from PIL import Image

from bench.images import SMALL_SIZE, Upload, make_jpeg
from modelexport.photo_library import LIBRARY_PHOTOS, LibraryPhoto

# Food, a person, a vehicle, a plant, a building: five subjects, all in colour.
BENCH_PHOTOS = ("coffee.png", "astronaut.jpg", "rocket.jpg", "pagoda.jpg", "dahlia.jpg")


def large_enough(photo: LibraryPhoto, size: tuple[int, int] = SMALL_SIZE) -> bool:
    """Whether the photograph covers `size` without upscaling in either direction."""
    with Image.open(photo.file) as picture:
        width, height = picture.size
    return width >= size[0] and height >= size[1]


def pick_photos(names: tuple[str, ...] = BENCH_PHOTOS) -> tuple[list[LibraryPhoto], list[str]]:
    """The library photographs named, in that order, and a note for each one left out."""
    by_name = {photo.name: photo for photo in LIBRARY_PHOTOS}
    picked: list[LibraryPhoto] = []
    notes: list[str] = []
    for name in names:
        photo = by_name.get(name)
        if photo is None:
            notes.append(f"photograph {name}: not in the library, skipped")
        elif not large_enough(photo):
            notes.append(
                f"photograph {name}: smaller than {SMALL_SIZE[0]}x{SMALL_SIZE[1]}, skipped"
            )
        else:
            picked.append(photo)
    return picked, notes


def make_photo_uploads(photos: list[LibraryPhoto]) -> list[Upload]:
    """Each photograph as a 480x360 JPEG upload named after its file."""
    return [
        Upload(photo.name, SMALL_SIZE, make_jpeg(SMALL_SIZE, source=photo.file, grain_sigma=0.0))
        for photo in photos
    ]
