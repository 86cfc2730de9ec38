"""`python -m gateway` refuses a bad configuration clearly, without echoing secrets.

`main()` is what `python -m gateway` runs; SystemExit with a message is how the
process prints it to stderr and exits with status 1, so calling it here proves
what the process would print. Every end-to-end test starts the gateway through
`python -m gateway`, so the entry point itself runs there.
"""

import pytest

from gateway.__main__ import main

SECRET = "k3y-that-must-never-be-logged"


def refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """What `main()` stops with under `env`: the text the process writes to stderr."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        main()
    message = stopped.value.code
    assert isinstance(message, str)  # a message, so the process prints it and exits with 1
    return message


def test_a_whole_model_check_names_the_problem_but_not_the_api_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(
        monkeypatch, API_KEYS=SECRET, TF_SERVING_URL="ftp://tf-serving:8501/v1/models/m:predict"
    )
    assert message.startswith("gateway: invalid configuration:")
    assert "TF_SERVING_URL must be an http(s) URL" in message
    output = capsys.readouterr()
    assert SECRET not in message + output.out + output.err


def test_a_field_error_names_the_setting_but_not_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refusal(monkeypatch, API_KEYS=SECRET, PORT="not-a-port")
    assert "  PORT:" in message
    assert "not-a-port" not in message
    output = capsys.readouterr()
    assert SECRET not in message + output.out + output.err
