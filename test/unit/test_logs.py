"""LOG_FORMAT: today's text, or one JSON object per line for every logger, uvicorn's included."""

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import uvicorn

from fake_backend import fake_settings, write_model_files
from gateway import request_id
from gateway.logs import FIELDS, JsonFormatter, configure_logging, uvicorn_log_config
from gateway.settings import Settings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root and uvicorn loggers back as they were: configure_logging is process-wide."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    watched = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.disabled, lg.level) for lg in watched]
    token = request_id.use(None)
    yield
    request_id.reset(token)
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger, its_handlers, propagate, disabled, its_level in saved:
        logger.handlers[:] = its_handlers
        logger.propagate, logger.disabled = propagate, disabled
        logger.setLevel(its_level)


def settings_for(tmp_path: Path, log_format: str, log_level: str = "info") -> Settings:
    return fake_settings(write_model_files(tmp_path), log_format=log_format, log_level=log_level)


def json_lines(text: str) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in text.splitlines() if line]


def test_json_lines_carry_time_level_logger_message_and_request_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings_for(tmp_path, "json"))
    logging.getLogger("gateway.somewhere").info("outside %s", "any request")
    request_id.use("req-9")
    logging.getLogger("gateway.somewhere").warning("inside")
    outside, inside = json_lines(capsys.readouterr().err)
    assert outside["message"] == "outside any request"
    assert "request_id" not in outside
    assert inside == {
        "time": inside["time"],
        "level": "WARNING",
        "logger": "gateway.somewhere",
        "message": "inside",
        "request_id": "req-9",
    }
    when = datetime.fromisoformat(str(inside["time"]))
    assert when.utcoffset() == UTC.utcoffset(None)
    assert abs((datetime.now(UTC) - when).total_seconds()) < 3600


def test_an_exception_is_one_line_with_its_traceback_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings_for(tmp_path, "json"))
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logging.getLogger("gateway.x").exception("it failed")
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    (line,) = json_lines(err)
    assert line["level"] == "ERROR"
    assert "Traceback" in str(line["exception"])
    assert "ValueError: bad\nthing" in str(line["exception"])


def test_uvicorn_s_loggers_come_out_as_json_through_uvicorn_s_own_set_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `python -m gateway` does: configure, then let uvicorn apply its log_config
    # (uvicorn's default one would give its loggers handlers of their own, in text).
    configure_logging(settings_for(tmp_path, "json"))
    uvicorn.Config(
        "gateway.app:create_app",
        factory=True,
        log_config=uvicorn_log_config(),
        log_level="info",
        access_log=False,
    )
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("uvicorn.access").info("uvicorn's own access line")
    (line,) = json_lines(capsys.readouterr().err)
    assert (line["logger"], line["message"]) == ("uvicorn.error", "Started server process")


def test_text_keeps_today_s_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings_for(tmp_path, "text"))
    request_id.use("req-1")
    logging.getLogger("gateway.app").info("gateway %s serving", "1.0")
    assert capsys.readouterr().err == "INFO gateway.app: gateway 1.0 serving\n"


def test_log_level_filters_and_calling_again_replaces_the_handler(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(settings_for(tmp_path, "text"))
    configure_logging(settings_for(tmp_path, "json", log_level="warning"))
    logging.getLogger("gateway.x").info("not shown")
    logging.getLogger("gateway.x").error("shown once")
    (line,) = json_lines(capsys.readouterr().err)
    assert line["message"] == "shown once"


def test_structured_fields_follow_the_record_s_own_and_cannot_forge_them() -> None:
    record = logging.LogRecord("gateway.access", logging.INFO, __file__, 1, "GET /", None, None)
    setattr(record, FIELDS, {"status": 200, "level": "forged", "path": Path("/p")})
    document = orjson.loads(JsonFormatter().format(record))
    assert list(document)[:4] == ["time", "level", "logger", "message"]
    assert document["level"] == "INFO"
    assert (document["status"], document["path"]) == (200, "/p")


def test_handlers_someone_else_installed_stay(tmp_path: Path) -> None:
    root = logging.getLogger()
    theirs = logging.StreamHandler(sys.stdout)
    root.addHandler(theirs)
    # Apps built by earlier tests may have configured logging already: ours are replaced.
    before = [handler for handler in root.handlers if type(handler).__name__ != "_GatewayHandler"]
    configure_logging(settings_for(tmp_path, "json"))
    configure_logging(settings_for(tmp_path, "json"))
    assert root.handlers[: len(before)] == before
    assert len(root.handlers) == len(before) + 1  # one of ours, however often it is called
