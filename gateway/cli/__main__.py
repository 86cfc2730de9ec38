"""`python -m gateway.cli` and the `mlpipe` console script: parse, then run one command.

The command modules are imported only once the arguments are parsed, so
`--help` and usage errors answer without loading httpx. Every import is inside
the `try` that catches Ctrl-C: pressed while they load (the first tenth of a
second), it ends the run like at any other moment, "interrupted" and exit 130,
not a traceback.
"""

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from httpx import AsyncBaseTransport


def main(argv: Sequence[str] | None = None, transport: "AsyncBaseTransport | None" = None) -> int:
    """Run the command the arguments name; returns the exit code (0 ok, 1 failed, 2 usage).

    `transport` is the seam tests fake (httpx.MockTransport); None sends over the network.
    """
    try:
        from gateway.cli.arguments import parse_arguments

        arguments = parse_arguments(argv)
        from gateway.cli import commands, predictions

        run = {
            "predict": predictions.run_predict,
            "health": commands.run_health,
            "models": commands.run_models,
            "metrics": commands.run_metrics,
        }[arguments.command]
        return run(arguments, transport)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
