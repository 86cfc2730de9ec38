"""`python -m gateway`: serve the API with uvicorn on HOST:PORT."""

import uvicorn
from pydantic import ValidationError

from gateway.logs import configure_logging, uvicorn_log_config
from gateway.settings import Settings


def main() -> None:
    """Validate the configuration first, so a bad value stops the process with a clear message."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(f"gateway: invalid configuration:\n{describe_errors(exc)}") from None
    configure_logging(settings)
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Leave configure_logging's handler and LOG_FORMAT alone; the access line
        # is gateway/access_log.py's, so uvicorn's own is off.
        log_config=uvicorn_log_config(),
        access_log=False,
        # Keep-alive longer than typical client pools so idle connections are reused.
        timeout_keep_alive=30,
    )


def describe_errors(exc: ValidationError) -> str:
    """Each problem as `SETTING: message`, never the values given.

    pydantic's own text repeats the input, and for a whole-model check the
    input is every setting, API_KEYS included: a secret in a start-up log.
    """
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        names = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        lines.append(f"  {names}: {error['msg']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
