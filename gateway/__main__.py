"""`python -m gateway`: serve the API with uvicorn on HOST:PORT."""

import logging

import uvicorn
from pydantic import ValidationError

from gateway.settings import Settings


def main() -> None:
    """Validate the configuration first, so a bad value stops the process with a clear message."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(f"gateway: invalid configuration:\n{describe_errors(exc)}") from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        "gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
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
