"""One model's versions: discovery under its base path, loading, unloading, and their states.

Each model of the config (server_core.py) has one registry, which follows:
- Discovery (TFS/sources/storage_path/file_system_storage_path_source.cc): every
  `--file_system_poll_wait_seconds` the base path is listed; children whose names
  are decimal integers are versions (`007` is version 7; `v1`, `1.0`, `tmp-2` are
  ignored). 0 scans once, a negative value never scans.
- The model's version policy (version_policy.py) picks the wanted versions;
  without a config file it is `latest { num_versions: 1 }`.
- AvailabilityPreservingPolicy (TFS/core/availability_preserving_policy.cc
  `GetNextAction`), one action at a time: first unload the lowest ready version
  that is no longer wanted, but only while no version is wanted, a wanted one is
  ready, or more than one unwanted one is ready; otherwise load the highest
  wanted version not tried yet. So a new version loads before the old one goes;
  a version that fails ends in END with its error and the old one keeps serving;
  deleting the newest directory rolls back to the next highest; deleting all
  unloads everything. A failed version is tried again only after it stopped
  being wanted (the manager forgets it).
- Load retries (`--max_num_load_retries`=5, `--load_retry_interval_micros`=60 s,
  TFS/core/loader_harness.cc): the version stays LOADING while it is retried.
- State monitor (TFS/core/servable_state_monitor.h, get_model_status_impl.cc):
  every version ever seen stays listed; unloaded ones are END. A model removed
  from the config keeps its registry, retired, so its versions stay listed.
- Handles (TFS/core/basic_manager.cc): Latest is the highest AVAILABLE version.
Reference: docs/tf-serving-protocol.md §10, §2.1 (status) and §14.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ServingError
from .servable import Servable
from .version_policy import VersionPolicy

_VERSION_NAME = re.compile(r"[0-9]+")
_INT64_MAX = 2**63 - 1

log = logging.getLogger("tfserving_double")

LoadFn = Callable[[int, str], Servable]


@dataclass(frozen=True)
class VersionStatus:
    """One entry of GetModelStatusResponse.model_version_status."""

    version: int
    state: str
    error_code: str = "OK"
    error_message: str = ""


class StartupError(Exception):
    """The wanted version failed and nothing else serves (`{id} due to error: ...`)."""


class ModelRegistry:
    """Polls one model's base path and keeps the versions its policy wants loaded."""

    def __init__(
        self,
        model_name: str,
        base_path: str,
        policy: VersionPolicy,
        load: LoadFn,
        poll_wait_seconds: int,
        max_load_retries: int,
        load_retry_interval_seconds: float,
    ) -> None:
        self.model_name = model_name
        self.base_path = base_path
        self._policy = policy
        self._load_fn = load
        self._poll_wait = poll_wait_seconds
        self._max_retries = max(0, max_load_retries)
        self._retry_interval = load_retry_interval_seconds
        self._lock = threading.Condition()
        # Held for a whole poll (scan, loads, unloads) and by retire(): one writer at a time.
        self._work = threading.Lock()
        self._active = True
        self._states: dict[int, VersionStatus] = {}
        self._available: dict[int, Servable] = {}
        self._failed: set[int] = set()
        self._failure: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._poll_loop, name=f"version-poller-{model_name}", daemon=True
        )

    def start(self) -> None:
        """Start polling the base path in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling; an in-flight load finishes in the background."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()

    def configure(self, base_path: str, policy: VersionPolicy) -> None:
        """Take a reloaded config's base path and policy; they apply from the next poll."""
        with self._lock:
            if not self._active:
                self._failure = None
            self.base_path, self._policy, self._active = base_path, policy, True

    def retire(self) -> None:
        """The model left the config: unload every version (its states stay listed)."""
        with self._lock:
            self._active = False
        with self._work:
            self._failed.clear()
            for version in self.available_versions():
                self._unload(version)

    def wait_until_available(self, stop: threading.Event) -> bool:
        """Block like ServerCore's wait for Latest(name): True once a version is AVAILABLE."""
        with self._lock:
            while not stop.is_set():
                if self._available:
                    return True
                if self._failure is not None:
                    raise StartupError(self._failure)
                self._lock.wait(0.2)
        return False

    def available_versions(self) -> list[int]:
        """Versions currently AVAILABLE, lowest first."""
        with self._lock:
            return sorted(self._available)

    def version_states(self) -> dict[int, VersionStatus]:
        """Every version ever seen and its current state."""
        with self._lock:
            return dict(self._states)

    def servable(self, version: int | None) -> Servable | None:
        """The highest AVAILABLE version, or the given one if AVAILABLE; else None."""
        with self._lock:
            if version is None:
                return self._available[max(self._available)] if self._available else None
            return self._available.get(version)

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
        with self._work:
            if not self._is_active():
                return
            with self._lock:
                base_path, policy = self.base_path, self._policy
            versions = self._scan(base_path)
            if versions is None:
                return
            aspired = policy.aspired(self.model_name, versions)
            self._failed &= aspired
            while not self._stop.is_set() and self._is_active():
                ready = set(self.available_versions())
                unwanted = ready - aspired
                if unwanted and (not aspired or ready & aspired or len(unwanted) > 1):
                    self._unload(min(unwanted))
                    continue
                new = aspired - ready - self._failed
                if not new:
                    return
                self._load(max(new), versions[max(new)])

    def _is_active(self) -> bool:
        with self._lock:
            return self._active

    def _scan(self, base_path: str) -> dict[int, str] | None:
        try:
            children = sorted(os.listdir(base_path))
        except OSError as exc:
            log.error(
                "FileSystemStoragePathSource encountered a filesystem access error: "
                "Could not find base path %s for servable %s with error %s",
                base_path,
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
            versions[version] = os.path.join(base_path, child)
        if not versions:
            log.warning(
                "No versions of servable %s found under base path %s. Did you forget to name "
                "your leaf directory as a number (eg. '/1/')?",
                self.model_name,
                base_path,
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
                self._failure = f"{servable_id} due to error: {error[0]}: {error[1]}"
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
