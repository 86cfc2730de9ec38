"""Re-reading `--model_config_file` every `--model_config_file_poll_wait_seconds`.

Follows TFS/model_servers/server.cc: after ServerCore is created, a periodic
thread (`PollFilesystemAndReloadConfig`) reads and parses the file and hands
it to ServerCore::ReloadConfig (server_core.py). A file that cannot be read or
parsed is logged ("Failed to read ModelServerConfig file: ...") and a config
ReloadConfig refuses is logged ("PollFilesystemAndReloadConfig failed to
ReloadConfig: ..."); either way the running config stays. The same config read
again is reloaded again (its labels are checked again), which changes nothing.
Difference: TF Serving's PeriodicFunction runs once as it starts; the double's
first read is one period after start-up, when the file read at start-up is
the only one that could have been applied anyway. Reference:
docs/tf-serving-protocol.md §14.4.
"""

from __future__ import annotations

import logging
import threading

from .errors import ServingError
from .model_config import read_config_file
from .server_core import ServerCore

log = logging.getLogger("tfserving_double")


class ConfigFilePoller:
    """A background thread that reloads the config file until `stop` is set."""

    def __init__(
        self, core: ServerCore, path: str, period_seconds: int, stop: threading.Event
    ) -> None:
        self._core = core
        self._path = path
        self._period = period_seconds
        self._stop = stop
        self._thread = threading.Thread(target=self._run, name="config-poller", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def join(self) -> None:
        """Wait briefly for the thread to see `stop` (a reload in progress is left behind)."""
        self._thread.join(timeout=1.0)

    def poll_once(self) -> None:
        """Read the file and reload it, logging what TF Serving logs on failure."""
        try:
            config = read_config_file(self._path)
        except ServingError as exc:
            log.error("Failed to read ModelServerConfig file: %s", exc.message)
            return
        try:
            self._core.reload_config(config)
        except ServingError as exc:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", exc.message)

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.poll_once()
            except Exception:
                log.exception("Reloading %s failed", self._path)
