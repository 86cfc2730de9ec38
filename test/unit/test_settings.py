"""Configuration: validated at start-up, with the original variable names."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.settings import Settings


def test_defaults_point_at_a_local_tf_serving() -> None:
    settings = Settings()
    assert settings.tf_serving_url == "http://localhost:8501/v1/models/mobilenet:predict"
    assert settings.tf_serving_model_url == "http://localhost:8501/v1/models/mobilenet"
    assert settings.model_name == "mobilenet"


def test_the_original_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_SERVING_URL", "http://tensorflow-serving:8501/v1/models/resnet:predict")
    monkeypatch.setenv("MODEL_NAME", "resnet")
    settings = Settings()
    assert settings.model_name == "resnet"
    assert settings.tf_serving_model_url == "http://tensorflow-serving:8501/v1/models/resnet"


def test_model_name_follows_the_url_when_not_given() -> None:
    settings = Settings(tf_serving_url="http://tfs:8501/v1/models/other:predict")
    assert settings.model_name == "other"


@pytest.mark.parametrize(
    ("path", "version", "label"),
    [
        ("mobilenet:predict", None, None),
        ("mobilenet/versions/1:predict", 1, None),
        ("mobilenet/versions/0007:predict", 7, None),
        ("mobilenet/labels/stable:predict", None, "stable"),
        ("mobilenet/labels/can%20ary:predict", None, "can ary"),
    ],
)
def test_a_version_or_label_in_the_url_is_read_apart_from_the_model_url(
    path: str, version: int | None, label: str | None
) -> None:
    settings = Settings(tf_serving_url=f"http://tfs:8501/v1/models/{path}")
    assert (settings.tf_serving_version, settings.tf_serving_version_label) == (version, label)
    assert settings.tf_serving_model_url == "http://tfs:8501/v1/models/mobilenet"
    assert settings.model_name == "mobilenet"


def test_a_bare_server_address_gets_the_predict_path() -> None:
    settings = Settings(tf_serving_url="http://tfs:8501", model_name="mobilenet")
    assert settings.tf_serving_url == "http://tfs:8501/v1/models/mobilenet:predict"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tf_serving_url": "tfs:8501"}, "http"),
        ({"tf_serving_url": "http://tfs:8501/predict"}, "predict URL"),
        ({"tf_serving_url": "http://tfs:8501/v1/models/m:predict?x=1"}, "query"),
        (
            {"tf_serving_url": "http://tfs:8501/v1/models/a:predict", "model_name": "b"},
            "agree",
        ),
        ({"tf_serving_url": "http://tfs:8501/v1/models/m/versions/v1:predict"}, "predict URL"),
        (
            {"tf_serving_url": "http://tfs:8501/v1/models/m/versions/1/labels/a:predict"},
            "predict URL",
        ),
        (
            {"tf_serving_url": f"http://tfs:8501/v1/models/m/versions/{2**63}:predict"},
            "beyond int64",
        ),
        (
            {
                "tf_serving_url": "http://tfs:8501/v1/models/m/labels/stable:predict",
                "inference_backend": "embedded",
            },
            "INFERENCE_BACKEND=embedded",
        ),
        ({"inference_backend": "onnx"}, "tfserving"),
        ({"max_upload_bytes": 0}, "greater than 0"),
    ],
)
def test_bad_values_stop_start_up_with_a_clear_message(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)  # type: ignore[arg-type]


def test_api_keys_come_from_the_variable_and_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("# team keys\nfile-key\n\n")
    settings = Settings(api_keys=" key-one , key-two,", api_keys_file=key_file)
    assert settings.accepted_api_keys() == {"key-one", "key-two", "file-key"}
    assert "key-one" not in repr(settings)


def test_a_missing_api_keys_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="API_KEYS_FILE"):
        Settings(api_keys_file=tmp_path / "absent")


def test_cors_is_off_unless_origins_are_listed() -> None:
    assert Settings().cors_origins == []
    assert Settings(cors_allow_origins="https://a.example, https://b.example").cors_origins == [
        "https://a.example",
        "https://b.example",
    ]


def test_model_name_alone_picks_the_default_servers_url() -> None:
    settings = Settings(model_name="efficientnet_lite0")
    assert settings.tf_serving_url == "http://localhost:8501/v1/models/efficientnet_lite0:predict"
    assert settings.model_name == "efficientnet_lite0"


@pytest.mark.parametrize("name", [".", "..", "..."])
def test_a_model_name_of_dots_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="must name a folder"):
        Settings(model_name=name)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:notaport/",
        "http://127.0.0.1:99999",
        "http://::1:8501",
        "http://a b:8501",
        "http://127.0.0.1:18501 ",
        "http://tfs:8501#frag",
        "http://user@tfs:8501/v1/models/mobilenet:predict",
    ],
)
def test_a_tf_serving_url_with_a_bad_address_is_refused(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the environment, as a deployment gives it; it once passed here and
    # failed later as a traceback in start-up (httpx.InvalidURL).
    monkeypatch.setenv("TF_SERVING_URL", url)
    with pytest.raises(ValidationError, match="TF_SERVING_URL"):
        Settings()


def test_an_ipv6_tf_serving_url_is_accepted_and_gives_the_grpc_target() -> None:
    settings = Settings(tf_serving_url="http://[::1]:8501")
    assert settings.tf_serving_url == "http://[::1]:8501/v1/models/mobilenet:predict"
    assert settings.grpc_target == "[::1]:8500"


@pytest.mark.parametrize(
    "target",
    [
        "",
        "tensorflow-serving:8500",
        "dns:///tensorflow-serving-grpc:8500",  # deploy/kubernetes/base/gateway.yaml
        "ipv4:10.0.0.1:8500,10.0.0.2:8500",
        "unix:/run/tfs.sock",
    ],
)
def test_grpc_targets_in_grpcs_forms_are_kept(target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_SERVING_GRPC_TARGET", target)
    assert Settings().tf_serving_grpc_target == target


@pytest.mark.parametrize(
    "target",
    [
        " ",
        ",",
        "ipv4:",
        "ipv4:,",
        "foo://bar",
        "a:8500,b:8500",
        "ipv4:garbage",
        "ipv4:127.0.0.1",
        "ipv4:127.0.0.1:99999",
    ],
)
def test_other_grpc_targets_stop_start_up_naming_the_forms(
    target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TF_SERVING_GRPC_TARGET", target)
    with pytest.raises(ValidationError, match="tf_serving_grpc_target") as refused:
        Settings()
    assert "the accepted forms are HOST:PORT" in str(refused.value)
