"""How the gateway's log lines look: today's text for people, or one JSON object per line.

LOG_FORMAT=json is for collectors: every record (the gateway's, uvicorn's start-up
and error lines, the access line) becomes `{"time", "level", "logger", "message"}`
plus `request_id` when the record was made while a request (or a batch) was being
handled, `exception` when it carries one, and the structured fields a record was
given under `extra={"fields": {...}}` (the access line's). Everything goes through
one handler on the root logger; uvicorn's loggers only propagate to it, and
uvicorn's own access log is off (`python -m gateway` passes `access_log=False`):
access_log.py writes one richer line per request instead.
"""

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway import request_id
from gateway.settings import Settings

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
# uvicorn's loggers: their records go to the root handler like every other.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
# A record's structured fields, given as `logger.info(..., extra={FIELDS: {...}})`.
FIELDS = "fields"


class RequestIdFilter(logging.Filter):
    """Stamp each record with the id current where it was made (None outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.current()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        known = getattr(record, "request_id", None)
        if known is not None:
            document["request_id"] = known
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            # After the record's own keys, which win: a field cannot forge the level or time.
            for key, value in fields.items():
                document.setdefault(key, value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        # default=str: a field that is not JSON (a Path, an enum) is written as text, not lost.
        return orjson.dumps(document, default=str).decode()


class _GatewayHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler configure_logging installs, told apart from others (pytest's) by type."""


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter LOG_FORMAT names."""
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(settings: Settings) -> None:
    """Send every record to stderr in LOG_FORMAT at LOG_LEVEL; calling it again replaces it.

    Handlers someone else installed on the root logger (pytest's capture) stay.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _GatewayHandler)]:
        root.removeHandler(handler)
    handler = _GatewayHandler(sys.stderr)
    handler.setFormatter(formatter_for(settings.log_format))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # The per-request line is access_log.py's; uvicorn's would be a second, poorer one.
    logging.getLogger("uvicorn.access").disabled = True


def uvicorn_log_config() -> dict[str, Any]:
    """The `log_config` for uvicorn.run that leaves configure_logging's set-up as it is.

    uvicorn applies a dict with logging.config.dictConfig, whose default (not
    incremental) closes every handler it finds and installs its own formatters;
    an incremental config naming nothing changes nothing.
    """
    return {"version": 1, "incremental": True}
