"""KServe's transformer arguments become settings; they win over the environment; others exit 2."""

import pytest

from gateway.__main__ import main
from gateway.command_line import settings_from_arguments
from gateway.settings import Settings

# What KServe appends to a custom transformer's args (InferenceService "mobilenet",
# namespace "default"; transformer_custom.go), plus --workers when containerConcurrency is set.
KSERVE_ARGS = [
    "--model_name",
    "mobilenet",
    "--predictor_host",
    "mobilenet-predictor.default",
    "--http_port",
    "8080",
]


def settings_for(argv: list[str]) -> Settings:
    return Settings(**settings_from_arguments(argv))


def test_kserve_arguments_name_the_model_its_predictor_over_rest_and_the_port() -> None:
    settings = settings_for(KSERVE_ARGS)
    assert settings.model_name == "mobilenet"
    assert settings.inference_backend == "tfserving"
    # A bare address, completed with the model's predict path.
    assert settings.tf_serving_url == (
        "http://mobilenet-predictor.default/v1/models/mobilenet:predict"
    )
    assert settings.tf_serving_model_url == "http://mobilenet-predictor.default/v1/models/mobilenet"
    assert settings.tf_serving_transport == "rest"
    assert settings.port == 8080


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_NAME", "efficientnet_lite0")
    monkeypatch.setenv("TF_SERVING_URL", "http://elsewhere:8501")
    monkeypatch.setenv("TF_SERVING_TRANSPORT", "grpc")
    monkeypatch.setenv("INFERENCE_BACKEND", "embedded")
    monkeypatch.setenv("PORT", "8000")
    monkeypatch.setenv("MAX_IN_FLIGHT", "7")
    settings = settings_for(KSERVE_ARGS)
    assert settings.model_name == "mobilenet"
    assert settings.tf_serving_url.startswith("http://mobilenet-predictor.default/")
    assert settings.tf_serving_transport == "rest"
    assert settings.inference_backend == "tfserving"
    assert settings.port == 8080
    assert settings.max_in_flight == 7  # what no flag names still comes from the environment


def test_without_arguments_the_environment_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_SERVING_URL", "http://tf:8501")
    monkeypatch.setenv("PORT", "9000")
    assert settings_from_arguments([]) == {}
    settings = settings_for([])
    assert settings.tf_serving_url == "http://tf:8501/v1/models/mobilenet:predict"
    assert settings.tf_serving_transport == "grpc"
    assert settings.port == 9000


def test_a_port_and_the_equals_form_are_accepted_and_ssl_means_https() -> None:
    settings = settings_for(
        [
            "--model_name=efficientnet_lite0",
            "--predictor_host=10.0.0.7:8501",
            "--predictor_use_ssl",
            "true",
            "--workers",
            "4",
            "--predictor_protocol",
            "v1",
        ]
    )
    assert settings.tf_serving_url == "https://10.0.0.7:8501/v1/models/efficientnet_lite0:predict"
    assert settings.model_name == "efficientnet_lite0"


def test_a_bracketed_ipv6_predictor_host_is_accepted() -> None:
    settings = settings_for(["--predictor_host", "[fd00::7]:8501"])
    assert settings.tf_serving_url == "http://[fd00::7]:8501/v1/models/mobilenet:predict"


def test_the_model_name_alone_keeps_the_transport_and_follows_into_the_default_url() -> None:
    settings = settings_for(["--model_name", "efficientnet_lite0"])
    assert settings.tf_serving_url == ("http://localhost:8501/v1/models/efficientnet_lite0:predict")
    assert settings.tf_serving_transport == "grpc"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--model_nmae", "x"], "unrecognized arguments: --model_nmae"),
        (["--model", "x"], "unrecognized arguments: --model"),  # no abbreviations
        (["serve"], "unrecognized arguments: serve"),
        (["--http_port", "eighty"], "--http_port: invalid int value"),
        (["--protocol", "v2"], "the predictor protocol v2 is not spoken"),
        (["--predictor_protocol", "grpc-v2"], "the predictor protocol grpc-v2 is not spoken"),
        (["--predictor_host", "http://tf:8501"], "--predictor_host takes HOST[:PORT]"),
        (["--predictor_host", "::1"], "an IPv6 address goes in brackets, such as [::1]:8500"),
        (["--predictor_host", "127.0.0.1:notaport"], "must be a number from 1 to 65535"),
        (["--predictor_host", "127.0.0.1:99999"], "must be a number from 1 to 65535"),
        (["--predictor_host", "127.0.0.1:18501 "], "must be a number from 1 to 65535"),
        (["--predictor_host", "a b"], "'a b' is not a DNS name or an IP address"),
        (["--predictor_host", "host#frag"], "'host#frag' is not a DNS name or an IP address"),
        (["--predictor_host", ""], "'' is not a DNS name or an IP address"),
        (["--predictor_use_ssl", "maybe"], "expected true or false"),
        (["--predictor_use_ssl", "true"], "--predictor_use_ssl needs --predictor_host"),
    ],
)
def test_a_bad_argument_exits_2_with_the_usage(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("usage: python -m gateway")
    assert complaint in error


def test_a_value_the_settings_refuse_is_named_like_any_other_setting() -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--http_port", "70000"])
    message = stopped.value.code
    assert isinstance(message, str)
    assert message.startswith("gateway: invalid configuration:")
    assert "  PORT:" in message
