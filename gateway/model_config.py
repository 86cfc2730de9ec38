"""Which models the gateway serves: TF Serving's model config file, or MODEL_NAME alone.

MODEL_CONFIG_FILE is the text-format `ModelServerConfig` TF Serving reads with
`--model_config_file` (protos/tensorflow_serving/config/model_server_config.proto),
parsed with the generated classes. The gateway takes from it each model's name,
folder, version policy and version labels; it is re-read when it changes, and a
file that no longer parses leaves the last good one in force, as TF Serving's
reload does (docs/tf-serving-protocol.md, model config file). The gateway also
refuses a reload that drops MODEL_NAME or moves its base_path (a restart does).

Each `base_path` is TF Serving's path. The gateway reads the same folders (labels,
provenance, golden answers; in-process, the models themselves): a base path that
exists here is used as written, else the folder of that name under MODEL_BASE_PATH,
which is how compose mounts one model tree into both containers.
"""

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from google.protobuf import text_format

from gateway.bounded_read import read_bounded
from gateway.settings import Settings
from gateway.tfserving.protos import model_server_config_pb2

logger = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 1024 * 1024  # a model list, not a dataset
# The label requests that name no version follow, when a model has it (docs/rollouts.md).
STABLE_LABEL = "stable"


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's ServableVersionPolicy: which version folders are served."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: frozenset[int] = frozenset()

    def served(self, on_disk: Iterable[int]) -> list[int]:
        """The versions this policy serves out of those on disk, highest first."""
        present = sorted(set(on_disk), reverse=True)
        if self.kind == "all":
            return present
        if self.kind == "specific":
            return [version for version in present if version in self.versions]
        return present[: self.num_versions]

    def describe(self) -> str:
        if self.kind == "specific":
            return f"specific versions {sorted(self.versions)}"
        if self.kind == "all":
            return "all versions"
        return f"the latest {self.num_versions} version(s)"


@dataclass(frozen=True)
class ModelEntry:
    """One model the gateway serves: its folder, version policy and version labels."""

    name: str
    path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSet:
    """Every model served, in the config file's order; MODEL_NAME's answers by default."""

    models: Mapping[str, ModelEntry]
    source: str  # where the list came from, for /models

    def names(self) -> list[str]:
        return list(self.models)


def single_model(settings: Settings) -> ModelSet:
    """MODEL_NAME alone, its newest version, as before there was a config file."""
    entry = ModelEntry(settings.model_name, settings.model_dir)
    return ModelSet({entry.name: entry}, "MODEL_NAME")


def parse_model_config(text: str, model_base_path: Path) -> ModelSet:
    """The models a ModelServerConfig text names; ValueError says what is wrong with it."""
    try:
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        raise ValueError(f"not a text-format ModelServerConfig: {exc}") from None
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError("it must hold a model_config_list (custom_model_config is not read)")
    models: dict[str, ModelEntry] = {}
    for model in config.model_config_list.config:
        if not model.name:
            raise ValueError("a model config has no name")
        if model.name in models:
            raise ValueError(f"model {model.name!r} is configured twice")
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"model {model.name!r} has model_platform {model.model_platform!r}; "
                "the gateway serves TensorFlow SavedModels only"
            )
        if not model.base_path:
            raise ValueError(f"model {model.name!r} has no base_path")
        policy = _policy(model)
        labels = dict(model.version_labels)
        for label, version in labels.items():
            if version <= 0:
                raise ValueError(f"model {model.name!r}: label {label!r} names version {version}")
        path = _local_path(model.base_path, model_base_path)
        models[model.name] = ModelEntry(model.name, path, policy, labels)
    if not models:
        raise ValueError("it configures no model")
    return ModelSet(models, "MODEL_CONFIG_FILE")


def _policy(model: model_server_config_pb2.ModelConfig) -> VersionPolicy:
    policy = model.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        versions = frozenset(policy.specific.versions)
        if not versions:
            raise ValueError(f"model {model.name!r}: a specific policy names no version")
        return VersionPolicy("specific", versions=versions)
    # TF Serving: no policy, or `latest {}` without num_versions, means the latest one.
    num = policy.latest.num_versions if choice == "latest" else 1
    return VersionPolicy("latest", num_versions=max(num, 1))


def _local_path(base_path: str, model_base_path: Path) -> Path:
    """The folder TF Serving's base path names, as seen from this process."""
    written = Path(base_path)
    if written.is_dir():
        return written
    return model_base_path / PurePosixPath(base_path).name


class ModelConfigFile:
    """MODEL_CONFIG_FILE, re-read when it changes; the last good model set stays in force."""

    def __init__(self, path: Path, model_base_path: Path):
        self._path = path
        self._base = model_base_path
        self._required = ""  # MODEL_NAME, once required: a file without it is refused
        self._required_path = Path()
        self._stamp: tuple[int, int, int] | None = None
        self.error = ""  # why the file as it is now is not in force; "" when it is
        self.models = self._read()  # refuses to start on a file that does not parse

    def require(self, model: str) -> None:
        """Refuse, from now on, a file that does not configure `model` (ValueError if this one)."""
        if model not in self.models.models:
            raise ValueError(
                f"MODEL_NAME {model!r} is not one of the models in MODEL_CONFIG_FILE: "
                f"{', '.join(self.models.names())}"
            )
        self._required = model
        self._required_path = self.models.models[model].path

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when a new model set took force."""
        try:
            stamp = _stamp(self._path)
        except OSError as exc:
            self.error = (
                f"MODEL_CONFIG_FILE cannot be read ({exc.strerror}); the last one read stays"
            )
            return False
        if stamp == self._stamp:
            return False
        try:
            models = self._read()
        except (OSError, ValueError) as exc:
            self._stamp = stamp
            # An OSError's text names the host path, and /models shows this to clients.
            reason = (exc.strerror or type(exc).__name__) if isinstance(exc, OSError) else exc
            self.error = f"MODEL_CONFIG_FILE was not applied ({reason}); the last one read stays"
            logger.error("%s", self.error)
            return False
        self.models, self.error = models, ""
        return True

    def _read(self) -> ModelSet:
        self._stamp = _stamp(self._path)
        data = read_bounded(self._path, MAX_CONFIG_BYTES)
        if len(data) > MAX_CONFIG_BYTES:
            raise ValueError(f"it is larger than {MAX_CONFIG_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("it is not UTF-8 text") from None
        models = parse_model_config(text, self._base)
        if self._required and self._required not in models.models:
            raise ValueError(f"it does not configure MODEL_NAME {self._required!r}")
        if self._required and models.models[self._required].path != self._required_path:
            # The default lane is the app's backend, opened once on that folder.
            raise ValueError(
                f"it moves MODEL_NAME {self._required!r} to another base_path; "
                "restart the gateway to serve it from there"
            )
        return models


def _stamp(path: Path) -> tuple[int, int, int]:
    stat = os.stat(path)
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)
