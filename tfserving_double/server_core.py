"""The server core: the config in force, one registry per model, and the version labels.

Follows TFS/model_servers/server_core.cc. `reload_config` is `ReloadConfig`,
used for the start-up config, each re-read of `--model_config_file` and gRPC
HandleReloadConfigRequest, with its checks in its order and its messages:
1. only ModelConfigList to ModelConfigList (or the first config, or the same
   one again): FAILED_PRECONDITION "Cannot transition to requested config...";
   an empty config is logged ("Taking no action for empty config.") and kept out;
2. `ValidateModelConfigList` and `ValidateNoModelsChangePlatforms`
   (model_config.py);
3. the config is taken as current, *then* `UpdateModelVersionLabelMap` checks
   the labels, so a refused label leaves the models as they were;
4. the platforms (only "tensorflow"), then models are added, reconfigured or
   retired (`AddModelsViaModelConfigList`), and the call waits until every new
   model has a version AVAILABLE: UNKNOWN "N model(s) did not become available"
   (at start-up load_servables_fast.cc says "N servable(s)").
Labels (`UpdateModelVersionLabelMap`): a label may only name a version that is
AVAILABLE right now; with `--allow_version_labels_for_unavailable_models` a
label that is new, or keeps its version, may name any version, but moving an
existing label still needs the target AVAILABLE. The first config is checked
before anything has loaded, so without the flag labels refuse start-up.
Requests resolve a label with `GetModelVersionForLabel` (INVALID_ARGUMENT
"Unrecognized servable version label: L"), then take Specific(name, version).
Reference: docs/tf-serving-protocol.md §14.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from google.protobuf import text_format
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from .errors import ServingError, invalid_argument, not_found
from .model_config import (
    ModelSpec,
    check_model_list,
    check_platforms_unchanged,
    model_specs,
)
from .registry import ModelRegistry, StartupError, VersionStatus
from .servable import Servable

log = logging.getLogger("tfserving_double")

RegistryFactory = Callable[[ModelSpec], ModelRegistry]
_LIST = "model_config_list"


class ServerCore:
    """The models of the current config and what requests ask of them."""

    def __init__(
        self, make_registry: RegistryFactory, allow_unavailable_labels: bool, stop: threading.Event
    ) -> None:
        self._make_registry = make_registry
        self._allow_unavailable_labels = allow_unavailable_labels
        self._stop = stop
        self._config_lock = threading.Lock()
        self._config = ModelServerConfig()
        self._lock = threading.Lock()
        self._registries: dict[str, ModelRegistry] = {}
        self._serving: list[str] = []
        self._labels: dict[str, dict[str, int]] | None = None

    def reload_config(self, config: ModelServerConfig) -> None:
        """ServerCore::ReloadConfig: check, take and apply a config, waiting for new models."""
        with self._config_lock:
            current = self._config.WhichOneof("config")
            first = current is None
            wanted = config.WhichOneof("config")
            if not (first or config == self._config or current == wanted == _LIST):
                message = (
                    "Cannot transition to requested config. It is only legal to transition "
                    "from one ModelConfigList to another."
                )
                log.error(message)
                log.error("Old config: %s", text_format.MessageToString(self._config))
                log.error("New config: %s", text_format.MessageToString(config))
                raise ServingError("FAILED_PRECONDITION", message)
            if wanted is None:
                log.info("Taking no action for empty config.")
                return
            if wanted == _LIST:
                check_model_list(config)
                if current == _LIST:
                    check_platforms_unchanged(self._config, config)
            self._config = ModelServerConfig()
            self._config.CopyFrom(config)
            self._update_labels(config)
            log.info("Adding/updating models.")
            if wanted != _LIST:
                # TF Serving's custom_model_config_loader is LOG(FATAL): the process aborts.
                log.critical("ModelServer does not yet support custom model config.")
                os._exit(134)
            awaited = self._apply(model_specs(config))
            log.info("Finished adding/updating models")
            self._await(awaited, "servable(s)" if first else "model(s)")
            log.info("Finished reloading config")

    def servable(self, model_name: str, version: int | None) -> Servable:
        """A handle like ServerCore::GetServableHandle (Latest or Specific), or NOT_FOUND."""
        with self._lock:
            registry = self._registries.get(model_name)
        servable = registry.servable(version) if registry is not None else None
        if servable is None:
            request = (
                f"Latest({model_name})" if version is None else f"Specific({model_name}, {version})"
            )
            raise not_found(f"Servable not found for request: {request}")
        return servable

    def version_for_label(self, model_name: str, label: str) -> int:
        """GetModelVersionForLabel: the version a label of the current config names."""
        with self._lock:
            labels = self._labels
        if labels is None:
            raise ServingError("UNAVAILABLE", f"Model labels does not init yet.{label}")
        version = labels.get(model_name, {}).get(label)
        if version is None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return version

    def version_statuses(self, model_name: str, version: int | None) -> list[VersionStatus]:
        """The status list for GetModelStatus, highest version first (get_model_status_impl.cc)."""
        states = self._states_of(model_name)
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {model_name}")
            return [states[version]]
        if not states:
            raise not_found(f"Could not find any versions of model {model_name}")
        return [states[v] for v in sorted(states, reverse=True)]

    def serving(self) -> list[tuple[str, list[int]]]:
        """Each model of the current config, in config order, with its AVAILABLE versions."""
        with self._lock:
            registries = [self._registries[name] for name in self._serving]
        return [(r.model_name, r.available_versions()) for r in registries]

    def stop(self) -> None:
        """Stop every registry's polling."""
        with self._lock:
            registries = list(self._registries.values())
        for registry in registries:
            registry.stop()

    def _states_of(self, model_name: str) -> dict[int, VersionStatus]:
        with self._lock:
            registry = self._registries.get(model_name)
        return registry.version_states() if registry is not None else {}

    def _update_labels(self, config: ModelServerConfig) -> None:
        previous = self._labels or {}
        labels: dict[str, dict[str, int]] = {}
        for model in config.model_config_list.config:
            states = self._states_of(model.name)
            for label, version in sorted(model.version_labels.items()):
                allowed = False
                if self._allow_unavailable_labels:
                    existing = previous.get(model.name, {}).get(label)
                    allowed = existing is None or existing == version
                state = states.get(version)
                if not allowed and (state is None or state.state != "AVAILABLE"):
                    raise ServingError(
                        "FAILED_PRECONDITION",
                        f"Request to assign label to version {version} of model {model.name}, "
                        "which is not currently available for inference",
                    )
                labels.setdefault(model.name, {})[label] = version
        with self._lock:
            self._labels = labels

    def _apply(self, specs: list[ModelSpec]) -> list[str]:
        """Add, reconfigure and retire registries; return the names of the new models."""
        created: list[ModelRegistry] = []
        with self._lock:
            names = [spec.name for spec in specs]
            added = [name for name in names if name not in self._serving]
            removed = [self._registries[n] for n in self._serving if n not in names]
            self._serving = names
            for spec in specs:
                log.info(" (Re-)adding model: %s", spec.name)
                registry = self._registries.get(spec.name)
                if registry is None:
                    registry = self._registries[spec.name] = self._make_registry(spec)
                    created.append(registry)
                else:
                    registry.configure(spec.base_path, spec.policy)
        for registry in removed:
            registry.retire()
        for registry in created:
            registry.start()
        return added

    def _await(self, names: list[str], noun: str) -> None:
        failures = []
        for name in names:
            with self._lock:
                registry = self._registries[name]
            try:
                if not registry.wait_until_available(self._stop):
                    return
            except StartupError as exc:
                failures.append(f"{{{exc}}}, ")
        if failures:
            listed = "".join(failures)
            raise ServingError(
                "UNKNOWN", f"{len(failures)} {noun} did not become available: {{{listed}}}"
            )
