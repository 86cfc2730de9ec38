"""`python -m gateway [KServe flags]`: serve the API with uvicorn on HOST:PORT.

Settings come from the environment; the flags KServe passes to a custom
transformer override it (gateway/command_line.py). Uvicorn runs as a
DrainingServer (gateway/shutdown.py), so SIGTERM drains before the process exits.

The first thing the process does is hold SIGTERM and SIGINT
(gateway/early_signals.py): the imports below take about a second, and a
signal meanwhile must stop the gateway cleanly, not kill it (status 143) or,
as PID 1, be dropped. Hence the imports after code (ruff E402, on purpose).
Imported by a test instead of run, the module leaves the signals alone.
"""

# ruff: noqa: E402
from gateway.early_signals import FORCED_EXIT, EarlySignals

EARLY_SIGNALS = EarlySignals.install() if __name__ == "__main__" else None

import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from gateway.app import create_app
from gateway.command_line import settings_from_arguments
from gateway.drain import drain_of
from gateway.logs import configure_logging, uvicorn_log_config
from gateway.settings import Settings
from gateway.shutdown import DrainingServer

# uvicorn's own status for a server that never started serving (uvicorn.config).
STARTUP_FAILURE = 3


def main(argv: Sequence[str] = (), early_signals: EarlySignals | None = None) -> None:
    """Validate the configuration first, so a bad value stops the process with a clear message."""
    overrides = settings_from_arguments(argv)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(f"gateway: invalid configuration:\n{describe_errors(exc)}") from None
    configure_logging(settings)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
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
    server = DrainingServer(config, drain_of(app), settings.shutdown_timeout_seconds, early_signals)
    server.run()
    if server.stopped_before_start:
        return  # told to stop before serving: nothing was accepted, a clean exit
    if not server.started:
        sys.exit(STARTUP_FAILURE)
    if server.force_exit:
        sys.exit(FORCED_EXIT)


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
    main(sys.argv[1:], EARLY_SIGNALS)
