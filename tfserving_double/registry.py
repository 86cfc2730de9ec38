"""Model versions: discovery under the base path, loading, unloading, and their states.

One model, served with TF Serving's defaults:
- Discovery (TFS/sources/storage_path/file_system_storage_path_source.cc): every
  `--file_system_poll_wait_seconds` the base path is listed; children whose names
  are decimal integers are versions (`007` is version 7; `v1`, `1.0`, `tmp-2` are
  ignored). 0 scans once, a negative value never scans.
- Version policy `latest { num_versions: 1 }`: the highest version is aspired.
- AvailabilityPreservingPolicy (TFS/core/availability_preserving_policy.h): the new
  version is loaded before the old one is unloaded; a version that fails to load
  ends in END with its error and the old one keeps serving; deleting the newest
  directory rolls back to the next highest; deleting all unloads everything.
- Load retries (`--max_num_load_retries`=5, `--load_retry_interval_micros`=60 s,
  TFS/core/loader_harness.cc): the version stays LOADING while it is retried.
- State monitor (TFS/core/servable_state_monitor.h, get_model_status_impl.cc):
  every version ever seen stays listed, highest first; unloaded ones are END.
- Handles (TFS/core/basic_manager.cc): `Latest(name)` is the highest AVAILABLE
  version; anything else is NOT_FOUND "Servable not found for request: ...".
Reference: docs/tf-serving-protocol.md §10 and §2.1 (status).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ServingError, invalid_argument, not_found
from .servable import Servable

_VERSION_NAME = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1

log = logging.getLogger("tfserving_double")


@dataclass(frozen=True)
class VersionStatus:
    """One entry of GetModelStatusResponse.model_version_status."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


class StartupError(Exception):
    """The initially aspired version failed to load and nothing else serves."""


class ModelRegistry:
    """Polls one model's base path and keeps its versions loaded per the latest policy."""

    def __init__(
        self,
        model_name: str,
        base_path: str,
        load: Callable[[int, str], Servable],
        poll_wait_seconds: int,
        max_load_retries: int,
        load_retry_interval_seconds: float,
    ) -> None:
        self.model_name = model_name
        self.base_path = base_path
        self._load_fn = load
        self._poll_wait = poll_wait_seconds
        self._max_retries = max(0, max_load_retries)
        self._retry_interval = load_retry_interval_seconds
        self._lock = threading.Condition()
        self._states: dict[int, VersionStatus] = {}
        self._available: dict[int, Servable] = {}
        self._failed: set[int] = set()
        self._startup_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="version-poller", daemon=True)

    def start(self) -> None:
        """Start polling the base path in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; an in-flight load finishes in the background."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def wait_until_available(self, stop: threading.Event) -> bool:
        """Block like ServerCore's initial load: True once a version is AVAILABLE."""
        with self._lock:
            while not stop.is_set():
                if self._available:
                    return True
                if self._startup_error is not None:
                    raise StartupError(self._startup_error)
                self._lock.wait(0.2)
        return False

    def available_versions(self) -> list[int]:
        """Versions currently AVAILABLE, lowest first."""
        with self._lock:
            return sorted(self._available)

    def version_statuses(self, model_name: str, version: int | None) -> list[VersionStatus]:
        """The status list for GET /v1/models/NAME[/versions/N], highest version first."""
        with self._lock:
            states = dict(self._states) if model_name == self.model_name else {}
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {model_name}")
            return [states[version]]
        if not states:
            raise not_found(f"Could not find any versions of model {model_name}")
        return [states[v] for v in sorted(states, reverse=True)]

    def servable(self, model_name: str, version: int | None) -> Servable:
        """Get a handle like ServerCore::GetServableHandle (Latest or Specific)."""
        with self._lock:
            if model_name == self.model_name and self._available:
                if version is None:
                    return self._available[max(self._available)]
                if version in self._available:
                    return self._available[version]
        request = (
            f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
        )
        raise not_found(f"Servable not found for request: {request}")

    def version_for_label(self, model_name: str, label: str) -> int:
        """Resolve a version label; without a model config file no label exists (server_core.cc)."""
        raise invalid_argument(f"Unrecognized servable version label: {label}")

    def _poll_loop(self) -> None:
        if self._poll_wait < 0:
            log.warning("Negative --file_system_poll_wait_seconds: the base path is never polled")
            return
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception:
                log.exception("Polling %s failed", self.base_path)
            if self._poll_wait == 0 or self._stop.wait(self._poll_wait):
                return

    def _poll_once(self) -> None:
        versions = self._scan()
        if versions is None:
            return
        self._failed &= set(versions)
        aspired = max(versions) if versions else None
        if aspired is not None and aspired not in self._available and aspired not in self._failed:
            self._load(aspired, versions[aspired])
        with self._lock:
            serving = aspired is None or aspired in self._available
            retiring = [v for v in self._available if v != aspired] if serving else []
        for version in retiring:
            self._unload(version)

    def _scan(self) -> dict[int, str] | None:
        try:
            children = sorted(os.listdir(self.base_path))
        except OSError as exc:
            log.error(
                "FileSystemStoragePathSource encountered a filesystem access error: "
                "Could not find base path %s for servable %s with error %s",
                self.base_path,
                self.model_name,
                exc,
            )
            return None
        versions: dict[int, str] = {}
        for child in children:
            if not _VERSION_NAME.fullmatch(child) or int(child) > _INT64_MAX:
                continue
            version = int(child)
            if version in versions:
                log.warning(
                    "Duplicate version directories detected for version %d of servable %s: "
                    "%s is ignored",
                    version,
                    self.model_name,
                    child,
                )
                continue
            versions[version] = os.path.join(self.base_path, child)
        if not versions:
            log.warning(
                "No versions of servable %s found under base path %s. Did you forget to name "
                "your leaf directory as a number (eg. '/1/')?",
                self.model_name,
                self.base_path,
            )
        return versions

    def _set_state(self, status: VersionStatus) -> None:
        with self._lock:
            self._states[status.version] = status
            self._lock.notify_all()

    def _servable_id(self, version: int) -> str:
        return f"{{name: {self.model_name} version: {version}}}"

    def _load(self, version: int, path: str) -> None:
        servable_id = self._servable_id(version)
        self._set_state(VersionStatus(version, "START"))
        self._set_state(VersionStatus(version, "LOADING"))
        log.info("Loading servable version %s", servable_id)
        error: tuple[str, str] = ("UNKNOWN", "")
        for attempt in range(self._max_retries + 1):
            try:
                servable = self._load_fn(version, path)
            except Exception as exc:
                error = _status_of(exc)
                log.error("Loading servable version %s failed: %s: %s", servable_id, *error)
                if attempt < self._max_retries:
                    log.info("Retrying load of %s in %s s", servable_id, self._retry_interval)
                    if self._stop.wait(self._retry_interval):
                        return
                continue
            with self._lock:
                self._available[version] = servable
                self._states[version] = VersionStatus(version, "AVAILABLE")
                self._lock.notify_all()
            log.info("Successfully loaded servable version %s", servable_id)
            return
        self._failed.add(version)
        with self._lock:
            self._states[version] = VersionStatus(version, "END", *error)
            if not self._available:
                self._startup_error = (
                    "UNKNOWN: 1 servable(s) did not become available: "
                    f"{{{{{servable_id} due to error: {error[0]}: {error[1]}}}, }}"
                )
            self._lock.notify_all()

    def _unload(self, version: int) -> None:
        log.info("Unloading servable version %s", self._servable_id(version))
        with self._lock:
            self._states[version] = VersionStatus(version, "UNLOADING")
            self._available.pop(version, None)
        self._set_state(VersionStatus(version, "END"))
        log.info("Done unloading servable version %s", self._servable_id(version))


def _status_of(exc: Exception) -> tuple[str, str]:
    if isinstance(exc, ServingError):
        return exc.code, exc.message
    return "UNKNOWN", str(exc)
