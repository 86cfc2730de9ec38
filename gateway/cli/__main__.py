"""`python -m gateway.cli` and the `mlpipe` console script: parse, then run one command.

The command modules are imported only once the arguments are parsed, so
`--help` and usage errors answer without loading httpx.
"""

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway.cli.arguments import parse_arguments

if TYPE_CHECKING:
    from httpx import AsyncBaseTransport


def main(argv: Sequence[str] | None = None, transport: "AsyncBaseTransport | None" = None) -> int:
    """Run the command the arguments name; returns the exit code (0 ok, 1 failed, 2 usage).

    `transport` is the seam tests fake (httpx.MockTransport); None sends over the network.
    """
    arguments = parse_arguments(argv)
    from gateway.cli import commands, predictions

    run = {
        "predict": predictions.run_predict,
        "health": commands.run_health,
        "models": commands.run_models,
        "metrics": commands.run_metrics,
    }[arguments.command]
    try:
        return run(arguments, transport)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
