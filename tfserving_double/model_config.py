"""The model config file: a text ModelServerConfig read, checked and turned into models.

`--model_config_file` names a text-format `tensorflow.serving.ModelServerConfig`
(TFS/config/model_server_config.proto), read as TFS/util/proto_util.h
`ParseProtoTextFile` reads it (proto_files.py). Without it,
server.cc `BuildSingleModelConfig` makes a one-model list from `--model_name`
and `--model_base_path` (platform "tensorflow", no policy, no labels); with it,
those two flags are ignored (main.cc's help text; server.cc reads the file
alone), which is what happens under the Docker image, whose entrypoint always
passes them. Reference: docs/tf-serving-protocol.md §14.1.

The checks are TFS/model_servers/server_core.cc's, with its messages:
`ValidateModelConfigList` (names unique, base paths absolute),
`ValidateNoModelsChangePlatforms`, `GetPlatform` and `CreateStoragePathRoutes`
(only the "tensorflow" platform is registered in the stock server). The order
they run in, and the labels, are server_core.py's business.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from tensorflow_serving.config import model_server_config_pb2
from tensorflow_serving.config.model_server_config_pb2 import ModelConfig as ModelConfigProto
from tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

from .errors import invalid_argument
from .proto_files import parse_proto_text_file
from .version_policy import VersionPolicy

TENSORFLOW_PLATFORM = "tensorflow"
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")

log = logging.getLogger("tfserving_double")


@dataclass(frozen=True)
class ModelSpec:
    """One entry of model_config_list, as the double serves it."""

    name: str
    base_path: str
    policy: VersionPolicy


def read_config_file(path: str) -> ModelServerConfig:
    """Read and parse the file like ParseProtoTextFile (proto_files.py)."""
    config: ModelServerConfig = parse_proto_text_file(path, ModelServerConfig())
    return config


def single_model_config(model_name: str, base_path: str) -> ModelServerConfig:
    """The config server.cc builds from --model_name and --model_base_path."""
    log.info(
        "Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
        model_name,
        base_path,
    )
    config = ModelServerConfig()
    config.model_config_list.config.add(
        name=model_name, base_path=base_path, model_platform=TENSORFLOW_PLATFORM
    )
    return config


def check_model_list(config: ModelServerConfig) -> None:
    """ValidateModelConfigList: each name once, every base path absolute (or a URI)."""
    names: set[str] = set()
    for model in config.model_config_list.config:
        if model.name in names:
            raise invalid_argument(
                f"Illegal to list model {model.name} multiple times in config list"
            )
        names.add(model.name)
    for model in config.model_config_list.config:
        if not model.base_path.startswith("/") and not _URI_SCHEME.match(model.base_path):
            raise invalid_argument(
                f"Expected model {model.name} to have an absolute path or URI; "
                f"got base_path()={model.base_path}"
            )


def platform_of(model: ModelConfigProto) -> str:
    """GetPlatform: model_platform, or the deprecated model_type, never both nor neither."""
    if model.model_type != model_server_config_pb2.MODEL_TYPE_UNSPECIFIED:
        log.warning(
            "Deprecated ModelServerConfig::model_type field used. "
            "Prefer ModelServerConfig::model_platform."
        )
        if model.model_platform:
            raise invalid_argument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                f"ModelServerConfig::model_platform, model name is {model.name}"
            )
        if model.model_type != model_server_config_pb2.TENSORFLOW:
            raise invalid_argument(
                f"ModelServerConfig::model_type choice {model.model_type} not supported."
            )
        return TENSORFLOW_PLATFORM
    if not model.model_platform:
        raise invalid_argument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {model.name}"
        )
    return str(model.model_platform)


def check_platforms_unchanged(old: ModelServerConfig, new: ModelServerConfig) -> None:
    """ValidateNoModelsChangePlatforms: a model kept across a reload keeps its platform."""
    before = {model.name: platform_of(model) for model in old.model_config_list.config}
    for model in new.model_config_list.config:
        if model.name not in before:
            continue
        platform = platform_of(model)
        if platform != before[model.name]:
            raise invalid_argument(
                f"Illegal to change a model's platform. For model {model.name} platform was "
                f"{before[model.name]} and new platform requested is {platform}"
            )


def model_specs(config: ModelServerConfig) -> list[ModelSpec]:
    """The models to serve; only the "tensorflow" platform (CreateStoragePathRoutes)."""
    specs = []
    for model in config.model_config_list.config:
        platform = platform_of(model)
        if platform != TENSORFLOW_PLATFORM:
            raise invalid_argument(f"Model {model.name} requests unsupported platform {platform}")
        specs.append(
            ModelSpec(
                model.name,
                model.base_path,
                VersionPolicy.from_proto(model.model_version_policy),
            )
        )
    return specs
