"""IMAGE arguments become the list of files to send, before any request is made.

A file is taken as given, whatever its name (the gateway judges the bytes, and
says why it refuses them). A folder gives its image files, recursively. A glob
pattern is expanded here too, for shells that do not (Windows) and for quoted
patterns. Whatever matches nothing stops the run with exit 2: a typo must not
look like "0 images, all succeeded"; so does a named path that is not a regular
file (a FIFO would block the read, /dev/zero never ends) or a symlink loop.
Folders and patterns skip such entries. Each physical file is sent once,
however many paths reach it (`**` follows symlinked folders, loops included).
"""

import errno
import glob
import os
import stat
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

    A file reached twice (a folder and a pattern overlapping, a symlink, a `**`
    through a symlink loop) is sent once, under the path it first appears with.
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
    unique: dict[Path, Path] = {}
    for file in found:
        unique.setdefault(_identity(file), file)
    return list(unique.values())


def read_regular_file(path: Path) -> bytes:
    """The file's bytes; OSError when it is not a regular file (anymore).

    Opened without blocking and checked before any read: a FIFO put where a file
    was listed is refused instead of waiting for a writer that never comes.
    """
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with open(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return stream.read()


def _expand_one(argument: str) -> list[Path] | str:
    """The files one argument names, or why it names none."""
    path = Path(argument)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{argument}: symlink loop"
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            return f"{argument}: {exc.strerror or exc}"
        if glob.has_magic(argument):
            return _expand_pattern(argument)
        return f"{argument}: no such file or folder"
    if stat.S_ISREG(mode):
        return [path]
    if stat.S_ISDIR(mode):
        return images_in(path) or f"{argument}: the folder holds no image ({_extensions()})"
    return f"{argument}: not a regular file"


def _expand_pattern(argument: str) -> list[Path] | str:
    matches = [Path(match) for match in sorted(glob.glob(argument, recursive=True))]
    # A pattern's folders count as folders: 'photos/*' reaches photos/2024/a.jpg too.
    files = [
        file
        for match in matches
        for file in ([match] if match.is_file() else images_in(match) if match.is_dir() else [])
    ]
    return files or f"{argument}: the pattern matches no file"


def _identity(file: Path) -> Path:
    """The physical file a path reaches, to send it once."""
    try:
        return file.resolve()
    except (OSError, RuntimeError):  # a loop appeared since (RuntimeError before Python 3.13)
        return file.absolute()


def _extensions() -> str:
    return " ".join(sorted(extension.lstrip(".") for extension in IMAGE_EXTENSIONS))
