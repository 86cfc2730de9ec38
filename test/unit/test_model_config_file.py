"""MODEL_CONFIG_FILE: TF Serving's text-format ModelServerConfig, as the gateway reads it.

The policies follow TF Serving's ServableVersionPolicy
(TFS/config/file_system_storage_path_source.proto): `latest` keeps the
num_versions highest (1 when unset), `all` keeps every one, `specific` keeps the
named ones that exist.
"""

import os
import shutil
from pathlib import Path

import pytest

from gateway.model_config import (
    MAX_CONFIG_BYTES,
    ModelConfigFile,
    VersionPolicy,
    parse_model_config,
)


def model(name: str, base_path: str, extra: str = "") -> str:
    """One `config { ... }` entry of a model_config_list."""
    return (
        f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" {extra} }}'
    )


def config_text(*models: str) -> str:
    return "model_config_list {\n" + "\n".join(models) + "\n}\n"


def test_a_model_without_a_policy_serves_its_latest_version(tmp_path: Path) -> None:
    models = parse_model_config(config_text(model("mobilenet", "/models/mobilenet")), tmp_path)
    entry = models.models["mobilenet"]
    assert entry.policy == VersionPolicy("latest", num_versions=1)
    assert entry.policy.served([1, 3, 2]) == [3]
    assert entry.labels == {}
    assert models.source == "MODEL_CONFIG_FILE"


def test_the_latest_policy_keeps_the_highest_num_versions(tmp_path: Path) -> None:
    policy = "model_version_policy { latest { num_versions: 2 } }"
    entry = parse_model_config(config_text(model("m", "/m", policy)), tmp_path).models["m"]
    assert entry.policy.served([1, 5, 3, 4]) == [5, 4]
    assert entry.policy.describe() == "the latest 2 version(s)"


def test_latest_without_num_versions_means_one(tmp_path: Path) -> None:
    policy = "model_version_policy { latest {} }"
    entry = parse_model_config(config_text(model("m", "/m", policy)), tmp_path).models["m"]
    assert entry.policy.served([1, 2]) == [2]


def test_the_all_policy_keeps_every_version(tmp_path: Path) -> None:
    policy = "model_version_policy { all {} }"
    entry = parse_model_config(config_text(model("m", "/m", policy)), tmp_path).models["m"]
    assert entry.policy.served([2, 1, 3, 3]) == [3, 2, 1]
    assert entry.policy.describe() == "all versions"


def test_the_specific_policy_keeps_the_named_versions_on_disk(tmp_path: Path) -> None:
    policy = "model_version_policy { specific { versions: 1 versions: 7 } }"
    entry = parse_model_config(config_text(model("m", "/m", policy)), tmp_path).models["m"]
    assert entry.policy.served([1, 2, 3]) == [1]  # 7 is not on disk: not served
    assert entry.policy.describe() == "specific versions [1, 7]"


def test_a_specific_policy_naming_no_version_is_refused(tmp_path: Path) -> None:
    policy = "model_version_policy { specific {} }"
    with pytest.raises(ValueError, match="'m': a specific policy names no version"):
        parse_model_config(config_text(model("m", "/m", policy)), tmp_path)


def test_labels_and_the_models_order_are_kept(tmp_path: Path) -> None:
    labels = 'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 }'
    text = config_text(model("resnet", "/r"), model("mobilenet", "/m", labels))
    models = parse_model_config(text, tmp_path)
    assert models.names() == ["resnet", "mobilenet"]
    assert dict(models.models["mobilenet"].labels) == {"stable": 1, "canary": 2}


def test_a_label_naming_version_zero_is_refused(tmp_path: Path) -> None:
    labels = 'version_labels { key: "stable" value: 0 }'
    with pytest.raises(ValueError, match="'m': label 'stable' names version 0"):
        parse_model_config(config_text(model("m", "/m", labels)), tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model_config_list { config { name: ", "not a text-format ModelServerConfig"),
        ("no_such_field: 1", "not a text-format ModelServerConfig"),
        ("", "it must hold a model_config_list"),
        ("custom_model_config {}", "it must hold a model_config_list"),
        ("model_config_list {}", "it configures no model"),
        (config_text('config { base_path: "/m" }'), "a model config has no name"),
        (config_text('config { name: "m" }'), "model 'm' has no base_path"),
        (config_text(model("m", "/a"), model("m", "/b")), "model 'm' is configured twice"),
    ],
)
def test_a_config_that_cannot_be_served_is_refused_saying_why(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_config(text, tmp_path)


@pytest.mark.parametrize("platform", ["tensorflow_lite", "pytorch", "onnx"])
def test_platforms_other_than_tensorflow_are_refused(tmp_path: Path, platform: str) -> None:
    text = config_text(f'config {{ name: "m" base_path: "/m" model_platform: "{platform}" }}')
    with pytest.raises(ValueError, match="model_platform") as refused:
        parse_model_config(text, tmp_path)
    assert str(refused.value) == (
        f"model 'm' has model_platform {platform!r}; the gateway serves TensorFlow SavedModels only"
    )


def test_an_empty_platform_is_tensorflow(tmp_path: Path) -> None:
    text = config_text('config { name: "m" base_path: "/m" }')
    assert parse_model_config(text, tmp_path).names() == ["m"]


def test_a_base_path_that_exists_here_is_used_as_written(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere" / "mobilenet"
    folder.mkdir(parents=True)
    entry = parse_model_config(config_text(model("m", str(folder))), tmp_path / "base").models["m"]
    assert entry.path == folder


def test_a_base_path_missing_here_is_its_folder_under_model_base_path(tmp_path: Path) -> None:
    text = config_text(model("m", "/models/resnet_v2"))
    assert parse_model_config(text, tmp_path).models["m"].path == tmp_path / "resnet_v2"


def write(path: Path, text: str) -> None:
    """Replace the file as an editor or a ConfigMap update does: a new inode each time."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_a_file_that_does_not_parse_stops_the_start_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text("model_config_list { config { name: ")
    with pytest.raises(ValueError, match="not a text-format ModelServerConfig"):
        ModelConfigFile(path, tmp_path)


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    padding = "# " + "x" * MAX_CONFIG_BYTES + "\n"
    path.write_text(padding + config_text(model("m", "/m")))
    with pytest.raises(ValueError, match=f"larger than {MAX_CONFIG_BYTES} bytes"):
        ModelConfigFile(path, tmp_path)


def test_a_file_of_exactly_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    text = config_text(model("m", "/m"))
    path.write_text(text + "#" * (MAX_CONFIG_BYTES - len(text) - 1) + "\n")
    assert path.stat().st_size == MAX_CONFIG_BYTES
    assert ModelConfigFile(path, tmp_path).models.names() == ["m"]


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_bytes(b"# \xff\xfe\n" + config_text(model("m", "/m")).encode())
    with pytest.raises(ValueError, match="not UTF-8"):
        ModelConfigFile(path, tmp_path)


def test_an_unchanged_file_is_not_applied_again(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    write(path, config_text(model("m", "/m")))
    config = ModelConfigFile(path, tmp_path)
    assert config.refresh() is False
    assert (config.models.names(), config.error) == (["m"], "")


def test_a_changed_file_takes_force(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    write(path, config_text(model("m", "/m")))
    config = ModelConfigFile(path, tmp_path)
    write(path, config_text(model("m", "/m"), model("resnet", "/resnet")))
    assert config.refresh() is True
    assert config.models.names() == ["m", "resnet"]
    assert config.error == ""


def test_a_broken_reload_keeps_the_last_good_file_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    write(path, config_text(model("m", "/m")))
    config = ModelConfigFile(path, tmp_path)
    write(path, config_text(model("m", "/a"), model("m", "/b")))
    assert config.refresh() is False
    assert config.models.names() == ["m"]
    assert config.models.models["m"].path == tmp_path / "m"
    assert config.error == (
        "MODEL_CONFIG_FILE was not applied (model 'm' is configured twice); the last one read stays"
    )
    # Once fixed, the fixed file takes force and the error is gone.
    write(path, config_text(model("resnet", "/resnet")))
    assert config.refresh() is True
    assert (config.models.names(), config.error) == (["resnet"], "")


def test_a_deleted_file_keeps_the_last_good_one_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    write(path, config_text(model("m", "/m")))
    config = ModelConfigFile(path, tmp_path)
    path.unlink()
    assert config.refresh() is False
    assert config.models.names() == ["m"]
    assert config.error == (
        "MODEL_CONFIG_FILE cannot be read (No such file or directory); the last one read stays"
    )
    assert str(tmp_path) not in config.error


def test_a_file_that_cannot_be_opened_is_reported_without_its_path(tmp_path: Path) -> None:
    """The error reaches GET /models, which any client may read: no server path in it."""
    path = tmp_path / "models.config"
    write(path, config_text(model("m", "/m")))
    config = ModelConfigFile(path, tmp_path)
    path.unlink()
    path.mkdir()  # stat works, open fails: IsADirectoryError, whose str() names the path
    try:
        assert config.refresh() is False
        assert config.models.names() == ["m"]
        assert config.error.startswith("MODEL_CONFIG_FILE was not applied")
        assert str(tmp_path) not in config.error
    finally:
        shutil.rmtree(path)


def test_a_fifo_in_place_of_the_file_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text(config_text(model("m", "/models/m")))
    watched = ModelConfigFile(path, tmp_path)
    path.unlink()
    os.mkfifo(path)  # opening a FIFO for reading would wait for a writer: forever
    assert watched.refresh() is False
    assert "not a regular file" in watched.error
    assert watched.models.names() == ["m"]


def test_a_reload_moving_model_name_to_another_folder_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.config"
    path.write_text(config_text(model("m", "/models/m")))
    watched = ModelConfigFile(path, tmp_path)
    watched.require("m")
    path.write_text(config_text(model("m", "/elsewhere/m2")))
    assert watched.refresh() is False
    assert "restart the gateway" in watched.error
    assert watched.models.models["m"].path == tmp_path / "m"
