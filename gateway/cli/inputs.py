"""IMAGE arguments become the list of files to send, before any request is made.

A file is taken as given, whatever its name (the gateway judges the bytes, and
says why it refuses them). A folder gives its image files, recursively. A glob
pattern is expanded here too, for shells that do not (Windows) and for quoted
patterns. Whatever matches nothing stops the run with exit 2: a typo must not
look like "0 images, all succeeded".
"""

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path

# The formats the gateway decodes (gateway/image_formats.py), by the names files carry.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


class InputError(Exception):
    """One or more IMAGE arguments match no file; each message names one."""

    def __init__(self, messages: Sequence[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


def is_image_name(path: Path) -> bool:
    """Whether the file's extension is one of the image formats (any letter case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def images_in(folder: Path) -> list[Path]:
    """The folder's image files, at any depth, sorted by path."""
    return sorted(path for path in folder.rglob("*") if path.is_file() and is_image_name(path))


def expand_inputs(arguments: Iterable[str]) -> list[Path]:
    """Every file the arguments name, in their order; raises InputError naming what is missing.

    A file named twice (a folder and a pattern overlapping) is sent once, where it first appears.
    """
    found: list[Path] = []
    problems: list[str] = []
    for argument in arguments:
        files = _expand_one(argument)
        if isinstance(files, str):
            problems.append(files)
        else:
            found.extend(files)
    if problems:
        raise InputError(problems)
    return list(dict.fromkeys(found))


def _expand_one(argument: str) -> list[Path] | str:
    """The files one argument names, or why it names none."""
    path = Path(argument)
    if path.is_file():
        return [path]
    if path.is_dir():
        return images_in(path) or f"{argument}: the folder holds no image ({_extensions()})"
    if glob.has_magic(argument):
        matches = [Path(match) for match in sorted(glob.glob(argument, recursive=True))]
        # A pattern's folders count as folders: 'photos/*' reaches photos/2024/a.jpg too.
        files = [
            file
            for match in matches
            for file in ([match] if match.is_file() else images_in(match) if match.is_dir() else [])
        ]
        return files or f"{argument}: the pattern matches no file"
    return f"{argument}: no such file or folder"


def _extensions() -> str:
    return " ".join(sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS))
