"""Reading a file someone else controls: a regular file, at most so many bytes, never blocking.

Model folders, the model config file and the routing file are input. A FIFO
planted under one of their names would block `open` until a writer appears,
on the event loop, freezing every request; a huge file would be read whole.
"""

import os
import stat
from pathlib import Path


class NotARegularFile(OSError):
    """The name exists but is a FIFO, a device, a folder, ...: nothing to read."""

    def __init__(self) -> None:
        super().__init__("not a regular file")
        self.strerror = "not a regular file"


def read_bounded(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of `path` (more than `limit` means too large); OSError else."""
    # O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile()
        with os.fdopen(fd, "rb", closefd=False) as file:
            return file.read(limit + 1)
    finally:
        os.close(fd)
