"""The command line: subcommands, options and their defaults, parsed with argparse.

Options that every subcommand shares (where the gateway is, its key, how long to
wait) are declared once on a parent parser, so `mlpipe predict --url ...` and
`mlpipe health --url ...` read the same way.
"""

import argparse
import os
from collections.abc import Callable, Sequence

DEFAULT_URL = "http://localhost:8000"
URL_VARIABLE = "MLPIPE_URL"
KEY_VARIABLE = "MLPIPE_API_KEY"
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 64
DEFAULT_TIMEOUT_SECONDS = 60.0

EPILOG = """\
exit codes: 0 every request succeeded; 1 a request failed (the gateway's problem
detail, or what could not be reached, is on stderr); 2 the command line is wrong
(or an IMAGE matches nothing).
environment: MLPIPE_URL (default for --url), MLPIPE_API_KEY (default for --api-key:
keeps the key out of shell history and out of `ps`).
"""


def int_between(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (no upper bound when high is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"{value} is not {bounds}")
        return value

    return parse


def positive_seconds(text: str) -> float:
    """An argparse type: a duration in seconds, greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def base_url(text: str) -> str:
    """An argparse type: the gateway's base URL, http:// or https:// with a host."""
    scheme, separator, rest = text.partition("://")
    if not separator or scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise argparse.ArgumentTypeError(
            f"must start with http:// or https:// and name a host (got {text!r})"
        )
    return text.rstrip("/")


def _shared_options() -> argparse.ArgumentParser:
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--url",
        type=base_url,
        # A string default goes through `type` too: a bad MLPIPE_URL is refused the same way.
        default=os.environ.get(URL_VARIABLE) or DEFAULT_URL,
        help=f"the gateway's base URL (default: ${URL_VARIABLE}, else {DEFAULT_URL})",
    )
    shared.add_argument(
        "--api-key",
        default=os.environ.get(KEY_VARIABLE) or None,
        help=(
            f"sent as X-API-Key (default: ${KEY_VARIABLE}; prefer the variable: "
            "it keeps the key out of shell history and out of `ps`)"
        ),
    )
    shared.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="S",
        help=f"seconds to wait for each whole answer (default: {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    shared.add_argument(
        "--json",
        action="store_true",
        help="print JSON on stdout (predict: JSON Lines, one object per image)",
    )
    return shared


def build_parser() -> argparse.ArgumentParser:
    """The parser of `python -m gateway.cli` / `mlpipe`."""
    shared = _shared_options()
    parser = argparse.ArgumentParser(
        prog="mlpipe",
        description="Classify images with an ml-inference-pipeline gateway, or ask how it is.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict = _subcommand(
        commands,
        shared,
        "predict",
        "classify image files, folders or glob patterns",
        "Classify each IMAGE; answers are printed in the order of the inputs.",
    )
    predict.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="a file, a folder (its images, recursively) or a glob pattern such as 'photos/*.jpg'",
    )
    predict.add_argument(
        "--top-k",
        type=int_between(1),
        metavar="N",
        help="how many classes per image (default: the gateway's DEFAULT_TOP_K)",
    )
    predict.add_argument(
        "--concurrency",
        type=int_between(1, MAX_CONCURRENCY),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight at once, 1..{MAX_CONCURRENCY} (default: {DEFAULT_CONCURRENCY})",
    )
    predict.add_argument(
        "--raw",
        action="store_true",
        help="send each file as the whole request body (Content-Type from its extension) "
        "instead of multipart/form-data",
    )
    predict.add_argument(
        "--progress",
        action="store_true",
        help="show a progress bar on stderr even when stderr is not a terminal "
        "(shown anyway for more than 3 images on a terminal)",
    )
    for name, what in (
        ("health", "readiness: exit 0 only when the gateway answers healthy"),
        ("models", "every model served: versions, states, labels"),
    ):
        _subcommand(commands, shared, name, what)
    what = "the gateway's metrics: JSON (GET /metrics), or Prometheus' text page"
    metrics = _subcommand(commands, shared, "metrics", what)
    metrics.add_argument(
        "--prometheus",
        action="store_true",
        help="the Prometheus text page instead of JSON (printed as sent; --json does not apply)",
    )
    return parser


def _subcommand(
    commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
    shared: argparse.ArgumentParser,
    name: str,
    what: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand with the shared options, and the exit codes and variables in its help."""
    return commands.add_parser(
        name,
        parents=[shared],
        help=what,
        description=description or what,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse `argv` (the process's arguments when None); exits 2 on a usage error."""
    return build_parser().parse_args(argv)
