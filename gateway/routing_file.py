"""The routing file (ROUTING_FILE): read when it changes, kept when broken, replaced atomically.

`current()` is called on every request. It looks at the file at most once per
`check_seconds` (one clock read otherwise), and re-reads it only when its device,
inode, size, mtime or ctime changed. Why on the request path and not a watcher
task: nothing to start or stop in the lifespan, and an edit is in force on the
first request after at most a second. Why throttled and not a `stat` per request:
`stat` is a system call on the event loop, about a microsecond on a local disk but
milliseconds on a network volume, and a second of delay costs a rollout nothing.
`os.stat` follows symlinks, so a Kubernetes ConfigMap update (an atomic swap of the
`..data` link) shows up as a new inode.

A file that cannot be used (missing, unreadable, too large, not the agreed format)
never stops routing: the last good document stays in force (at start-up, none:
every model's default), and `error` says what is wrong with the file until it is
fixed. A half-written file is just a broken one: the writer's last write changes
the size or mtime, and the finished file is read then.
"""

import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.bounded_read import read_bounded
from gateway.traffic_split import RoutingConfig, RoutingError, parse_routing

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024  # a routing file for a few models takes a few hundred bytes
RACY_SECONDS = 2.0
_Signature = tuple[int, int, int, int, int]  # device, inode, size, mtime_ns, ctime_ns


class RoutingFileError(Exception):
    """The routing file could not be written; the message says why, without a traceback."""


class RoutingFile:
    """The routing in force: from `path` when given (re-read when it changes), else in memory."""

    def __init__(
        self,
        path: Path | None,
        check_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._check_seconds = check_seconds
        self._clock = clock
        self._config = RoutingConfig()
        self._error: str | None = None
        self._seen: _Signature | None = None
        self._next_check = float("-inf")
        # current() runs on the event loop, replace() may run in a worker thread.
        self._lock = threading.Lock()
        self.current()

    @property
    def error(self) -> str | None:
        """What is wrong with the file now (the last good routing is in force), or None."""
        return self._error

    def current(self) -> RoutingConfig:
        """The routing in force, re-read first if the file changed since the last look."""
        path = self.path
        due = path is not None and self._clock() >= self._next_check
        # Never waits: when replace() holds the lock it is writing the file anyway.
        if path is not None and due and self._lock.acquire(blocking=False):
            try:
                self._next_check = self._clock() + self._check_seconds
                self._check(path)
            finally:
                self._lock.release()
        return self._config

    def replace(self, config: RoutingConfig) -> None:
        """Put `config` in force; a file is written first (atomically), so it outlives restarts."""
        with self._lock:
            if self.path is not None:
                _write_atomically(self.path, config.to_json())
                self._seen = None  # just written, so racy: the next look reads it again
            self._config = config
            self._error = None
        logger.info("routing replaced: %s", _summary(config))

    def _check(self, path: Path) -> None:
        try:
            status = os.stat(path)
        except OSError as exc:
            self._fail(f"routing file {path.name}: cannot be read ({_reason(exc)})")
            self._seen = None  # when it comes back, read it whatever its signature
            return
        signature = _signature(status)
        if signature == self._seen:
            return
        # Taken before reading: a write during the read changes it, and is read next time.
        # A file modified within the last RACY_SECONDS may be written again with the same
        # size inside the same mtime tick (the kernel's clock, a few ms): it is read again
        # at every look until it has been still for that long (git's "racy clean" problem).
        racy = time.time() - status.st_mtime < RACY_SECONDS
        self._seen = None if racy else signature
        try:
            document = read_bounded(path, MAX_FILE_BYTES)
        except OSError as exc:
            self._fail(f"routing file {path.name}: cannot be read ({_reason(exc)})")
            return
        if len(document) > MAX_FILE_BYTES:
            self._fail(f"routing file {path.name}: larger than {MAX_FILE_BYTES} bytes")
            return
        try:
            config = parse_routing(document)
        except RoutingError as exc:
            self._fail(f"routing file {path.name}: {exc}")
            return
        if config != self._config or self._error is not None:
            logger.info("routing file %s read: %s", path, _summary(config))
        self._config, self._error = config, None

    def _fail(self, error: str) -> None:
        if error != self._error:  # once per new problem, not once per look
            logger.warning("%s; the last good routing stays in force", error)
        self._error = error


def _signature(status: os.stat_result) -> _Signature:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _write_atomically(path: Path, document: bytes) -> None:
    """Write beside `path`, then rename over it: a reader sees the old file or the new one."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        mode = 0o644
    except OSError as exc:
        raise RoutingFileError(f"cannot write routing file {path.name}: {_reason(exc)}") from exc
    temporary: str | None = None
    try:
        with tempfile.NamedTemporaryFile(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
        ) as file:
            temporary = file.name
            file.write(document)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)  # mkstemp's 0600 would change who may read the file
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise RoutingFileError(f"cannot write routing file {path.name}: {_reason(exc)}") from exc
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__  # never the traceback, nor str(exc)'s repr


def _summary(config: RoutingConfig) -> str:
    return ", ".join(sorted(config.models)) or "no model routed (defaults everywhere)"
