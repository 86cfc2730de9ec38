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
        raise SystemExit(f"gateway: invalid configuration:\n{exc}") from None
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


if __name__ == "__main__":
    main()
