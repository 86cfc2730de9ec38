"""--model_config_file: several models, version policies, and the configs start-up refuses.

Expected behaviour: docs/tf-serving-protocol.md §14 (server.cc, server_core.cc,
file_system_storage_path_source.cc).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from double_process import (
    Double,
    available,
    predict_offset,
    serve,
    wait_until,
    write_config,
    write_models,
)


def model_entry(name: str, base_path: Path, extra: str = "", platform: str = "tensorflow") -> str:
    return (
        f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "{platform}" '
        f"{extra} }}\n"
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(
        tmp_path_factory.mktemp("config_models"), {"three": [1, 2, 3], "other": [7]}
    )


@pytest.fixture(scope="module")
def double(store: Path) -> Iterator[Double]:
    config = write_config(
        store / "models.config",
        "model_config_list {\n"
        + model_entry("newest", store / "three")
        + model_entry(
            "two_newest", store / "three", "model_version_policy { latest { num_versions: 2 } }"
        )
        + model_entry("every", store / "three", "model_version_policy { all {} }")
        + model_entry(
            "picked",
            store / "three",
            "model_version_policy { specific { versions: 1 versions: 3 versions: 9 } }",
        )
        + model_entry("other", store / "other")
        + "}\n",
    )
    # The Docker image's entrypoint always adds these two; with a config file they are ignored.
    process = Double(
        store / "double.log",
        f"--model_config_file={config}",
        "--model_name=ignored",
        f"--model_base_path={store / 'other'}",
    )
    yield from serve(process)


def test_ready_line_names_every_model_in_config_order(double: Double) -> None:
    served = double.ready_line.split(" serving ", 1)[1]
    names = [entry.split(" versions ")[0] for entry in served.split(", ") if " versions " in entry]
    assert names == ["newest", "two_newest", "every", "picked", "other"]
    assert "newest versions [3]" in served
    assert served.endswith("other versions [7]")


def test_each_model_serves_its_own_base_path(double: Double, client: httpx.Client) -> None:
    assert predict_offset(client, double, "/v1/models/newest:predict") == 3.0
    assert predict_offset(client, double, "/v1/models/other:predict") == 7.0


def test_model_name_flag_is_ignored_with_a_config_file(
    double: Double, client: httpx.Client
) -> None:
    response = client.post(f"{double.url}/v1/models/ignored:predict", json={"instances": [[0.0]]})
    assert response.status_code == 404
    assert response.json() == {"error": "Servable not found for request: Latest(ignored)"}
    status = client.get(f"{double.url}/v1/models/ignored")
    assert status.json() == {"error": "Could not find any versions of model ignored"}


@pytest.mark.parametrize(
    ("model", "wanted"),
    [("newest", {3}), ("two_newest", {2, 3}), ("every", {1, 2, 3}), ("picked", {1, 3})],
)
def test_version_policy_picks_the_versions(
    double: Double, client: httpx.Client, model: str, wanted: set[int]
) -> None:
    wait_until(lambda: available(client, double, model) == wanted, what=f"{model} {wanted}")
    for version in wanted:
        path = f"/v1/models/{model}/versions/{version}:predict"
        assert predict_offset(client, double, path) == float(version)
    for version in {1, 2, 3} - wanted:
        response = client.post(
            f"{double.url}/v1/models/{model}/versions/{version}:predict",
            json={"instances": [[0.0]]},
        )
        assert response.status_code == 404
        assert response.json()["error"] == (
            f"Servable not found for request: Specific({model}, {version})"
        )


def test_latest_without_a_version_is_the_highest_available(
    double: Double, client: httpx.Client
) -> None:
    wait_until(lambda: available(client, double, "picked") == {1, 3}, what="picked {1, 3}")
    assert predict_offset(client, double, "/v1/models/picked:predict") == 3.0


def test_missing_specific_version_is_logged(double: Double) -> None:
    wait_until(lambda: "Version 9 of servable picked" in double.log(), what="the warning")
    assert "was not found in the file system" in double.log()


def refused(tmp_path: Path, config_text: str, *flags: str) -> str:
    config = write_config(tmp_path / "models.config", config_text)
    process = Double(tmp_path / "refused.log", f"--model_config_file={config}", *flags)
    assert process.exit_status() == 1
    return process.log()


def test_unsupported_platform_refuses_start_up(store: Path, tmp_path: Path) -> None:
    log = refused(
        tmp_path, "model_config_list {" + model_entry("m", store / "other", platform="tflite") + "}"
    )
    assert (
        "Failed to start server. Error: INVALID_ARGUMENT: Model m requests unsupported "
        "platform tflite"
    ) in log


def test_unparsable_config_file_refuses_start_up(tmp_path: Path) -> None:
    log = refused(tmp_path, "model_config_list { config { name: }")
    path = tmp_path / "models.config"
    assert (
        f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{path}'" in log
    )
