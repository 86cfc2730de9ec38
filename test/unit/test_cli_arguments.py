"""gateway/cli/arguments.py: defaults from the environment, bounds, usage errors exit 2."""

import pytest

from gateway.cli.arguments import DEFAULT_URL, parse_arguments


def exit_code_of(argv: list[str]) -> int | str | None:
    """The code argparse exits with for `argv` (help and usage errors exit)."""
    try:
        parse_arguments(argv)
    except SystemExit as stopped:
        return stopped.code
    raise AssertionError(f"{argv} parsed without exiting")


def test_url_and_key_default_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPIPE_URL", "http://gateway.example:8080")
    monkeypatch.setenv("MLPIPE_API_KEY", "from-env")
    arguments = parse_arguments(["models"])
    assert (arguments.url, arguments.api_key) == ("http://gateway.example:8080", "from-env")
    given = parse_arguments(["models", "--url", "http://other:1", "--api-key", "given"])
    assert (given.url, given.api_key) == ("http://other:1", "given")


def test_without_the_environment_the_url_is_localhost_and_no_key_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLPIPE_URL", raising=False)
    monkeypatch.delenv("MLPIPE_API_KEY", raising=False)
    arguments = parse_arguments(["predict", "cat.jpg"])
    assert (arguments.url, arguments.api_key) == (DEFAULT_URL, None)
    assert (arguments.concurrency, arguments.top_k, arguments.raw) == (4, None, False)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["predict", "a.jpg", "--concurrency", "0"], "0 is not between 1 and 64"),
        (["predict", "a.jpg", "--concurrency", "65"], "65 is not between 1 and 64"),
        (["predict", "a.jpg", "--top-k", "0"], "0 is not at least 1"),
        (["predict", "a.jpg", "--top-k", "two"], "'two' is not a whole number"),
        (["health", "--timeout", "-1"], "-1 is not a positive number of seconds"),
        (["predict"], "the following arguments are required: IMAGE"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_a_usage_error_exits_2_saying_what_is_wrong(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code_of(argv) == 2
    assert complaint in capsys.readouterr().err


def test_help_says_the_variable_keeps_the_key_out_of_history_and_ps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert exit_code_of(["predict", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "MLPIPE_API_KEY" in help_text
    assert "out of shell history and out of `ps`" in help_text


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://host", "http://", "8000", "host/x"])
def test_a_url_without_http_or_a_host_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_arguments(["health", "--url", url])
    assert stopped.value.code == 2
    assert "must start with http:// or https://" in capsys.readouterr().err


def test_a_url_keeps_its_path_without_the_trailing_slash() -> None:
    assert parse_arguments(["health", "--url", "https://h:9/prefix/"]).url == "https://h:9/prefix"
