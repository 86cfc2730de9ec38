"""The photograph library: its files, their checksums in IMAGES.md, and load_rgb."""

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from modelexport.photo_library import LIBRARY_DIR, LIBRARY_PHOTOS, LibraryPhoto, load_rgb

IMAGES_MD = LIBRARY_DIR / "IMAGES.md"
# Each photograph has a section "## `file`" (relative to the library folder) whose
# table has a row "| stored sha256 | `...` |".
SECTION = re.compile(r"^## `([^`]+)`$(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)
STORED_SHA = re.compile(r"^\| stored sha256 \| `([0-9a-f]{64})` \|$", re.MULTILINE)


def recorded_checksums() -> dict[str, str]:
    """The stored sha256 IMAGES.md records, by file name relative to the library folder."""
    recorded: dict[str, str] = {}
    for name, body in SECTION.findall(IMAGES_MD.read_text(encoding="utf-8")):
        found = STORED_SHA.findall(body)
        assert len(found) == 1, f"{name}: expected one 'stored sha256' row, found {found}"
        recorded[name] = found[0]
    return recorded


def relative_name(photo: LibraryPhoto) -> str:
    """How IMAGES.md names the photograph: its path relative to the library folder."""
    return Path(os.path.relpath(photo.file, LIBRARY_DIR)).as_posix()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("photo", LIBRARY_PHOTOS, ids=lambda photo: photo.name)
def test_each_photo_decodes_to_rgb_at_least_224_on_its_short_side(photo: LibraryPhoto) -> None:
    image = load_rgb(photo)
    assert image.mode == "RGB"
    assert min(image.size) >= 224
    pixels = np.asarray(image)
    assert pixels.shape == (image.height, image.width, 3)
    assert pixels.std() > 10  # a real picture, not a flat or blank file


@pytest.mark.parametrize("photo", LIBRARY_PHOTOS, ids=lambda photo: photo.name)
def test_each_photo_matches_the_checksum_images_md_records(photo: LibraryPhoto) -> None:
    assert sha256_of(photo.file) == recorded_checksums()[relative_name(photo)]


def test_images_md_lists_exactly_the_files_in_the_folder() -> None:
    in_folder = {path.name for path in LIBRARY_DIR.iterdir() if path.name != "IMAGES.md"}
    documented = {name for name in recorded_checksums() if "/" not in name}
    assert documented == in_folder


def test_every_photo_images_md_documents_is_in_the_library() -> None:
    assert set(recorded_checksums()) == {relative_name(photo) for photo in LIBRARY_PHOTOS}


def test_the_library_has_at_least_twelve_different_photographs() -> None:
    assert len(LIBRARY_PHOTOS) >= 12
    assert len({photo.file for photo in LIBRARY_PHOTOS}) == len(LIBRARY_PHOTOS)
    assert len({sha256_of(photo.file) for photo in LIBRARY_PHOTOS}) == len(LIBRARY_PHOTOS)
    # Different bytes could still be one picture encoded twice: compare what they show.
    thumbnails = [np.asarray(load_rgb(photo).resize((32, 32))) for photo in LIBRARY_PHOTOS]
    for i, first in enumerate(thumbnails):
        for j in range(i + 1, len(thumbnails)):
            difference = np.abs(first.astype(np.int16) - thumbnails[j]).mean()
            pair = (LIBRARY_PHOTOS[i].name, LIBRARY_PHOTOS[j].name)
            assert difference > 10, f"{pair} look the same"


def test_the_library_spans_several_kinds_of_subject() -> None:
    assert len({photo.subject for photo in LIBRARY_PHOTOS}) >= 8
    assert all(photo.description and photo.licence for photo in LIBRARY_PHOTOS)


def test_a_grey_photograph_comes_back_as_rgb_with_equal_channels() -> None:
    camera = next(photo for photo in LIBRARY_PHOTOS if photo.name == "camera.jpg")
    pixels = np.asarray(load_rgb(camera))
    assert pixels.shape == (512, 512, 3)
    assert (pixels[..., 0] == pixels[..., 1]).all()
    assert (pixels[..., 1] == pixels[..., 2]).all()
