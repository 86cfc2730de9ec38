"""SIGTERM and SIGINT while `python -m gateway` starts: held, then acted on, never lost.

Importing the gateway (FastAPI, numpy, Pillow, gRPC, ...) takes about a second
before uvicorn's server installs its own handlers (gateway/shutdown.py). A
signal in that second used to meet the default action: the process died with
status 143, or, as PID 1 in a container (the image's ENTRYPOINT is python),
the kernel dropped the signal, since it never delivers a signal to PID 1 that
has no handler, and the gateway went on to serve until the kubelet's SIGKILL.

`python -m gateway` therefore installs these handlers before anything else it
imports (this module imports only the standard library's `signal` and `os`).
The first signal is recorded; the server, once built, sees it and stops
before serving, exiting 0. A second one exits at once with status 1, like a
second signal during a drain: whatever is slow about starting, the operator
can still stop it.

What is left is the interpreter's own start, before any of the gateway's code
runs (some tens of milliseconds): a signal then still has the default action.
"""

import os
import signal
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The status of a second signal, while starting or draining (gateway/shutdown.py): the
# exit was forced, so during a drain accepted predictions may have been dropped.
FORCED_EXIT = 1


class EarlySignals:
    """Records the first SIGTERM or SIGINT until the server takes the signals over."""

    def __init__(self) -> None:
        self.received: int | None = None

    @classmethod
    def install(cls) -> "EarlySignals":
        """Handlers for SIGINT and SIGTERM that record the signal (main thread only)."""
        held = cls()
        for sig in SIGNALS:
            signal.signal(sig, held.record)
        return held

    def record(self, sig: int, frame: FrameType | None) -> None:
        """The handler: the first signal is kept for later, a second one exits at once."""
        if self.received is not None:
            # Nothing was accepted yet, so nothing is lost; no cleanup can hang either.
            os._exit(FORCED_EXIT)
        self.received = sig
