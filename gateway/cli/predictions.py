"""`predict`: many files through a bounded pool of requests, printed in the order given.

A fixed number of workers (`--concurrency`) take the next file from one shared
list, so no more files are read and no more requests are open than that,
however many files there are. Answers arrive in any order; each is printed as
soon as every file before it has been, so the output is the same at any
concurrency and still streams during a long run.
"""

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from httpx import AsyncBaseTransport

from gateway.cli.client import Answer, GatewayClient
from gateway.cli.inputs import InputError, expand_inputs
from gateway.cli.render import failure_line, json_line, prediction_table, untrained_warning

# Fewer images than this finish before a bar is worth drawing.
PROGRESS_FROM = 4
KEY_HINT = "hint: give the gateway's key with --api-key, or in MLPIPE_API_KEY"

Deliver = Callable[[int, Path, Answer], None]


class InOrder:
    """Passes answers on in index order, holding the ones that arrive early."""

    def __init__(self, emit: Callable[[Path, Answer], None]) -> None:
        self._emit = emit
        self._next = 0
        self._early: dict[int, tuple[Path, Answer]] = {}

    def deliver(self, index: int, file: Path, answer: Answer) -> None:
        self._early[index] = (file, answer)
        while self._next in self._early:
            self._emit(*self._early.pop(self._next))
            self._next += 1


@dataclass
class Printer:
    """Writes each answer: stdout for results, stderr for failures and warnings."""

    as_json: bool
    write: Callable[[str, TextIO], None]
    failures: int = 0
    unauthorized: bool = False
    _warned: set[str] = field(default_factory=set)

    def emit(self, file: Path, answer: Answer) -> None:
        if self.as_json:
            self.write(json_line(file, answer), sys.stdout)
        if not answer.ok:
            self.failures += 1
            self.unauthorized = self.unauthorized or answer.status == 401
            self.write(failure_line(file, answer), sys.stderr)
            return
        body: dict[str, Any] = answer.body
        if not self.as_json:
            # A blank line after each block keeps the images apart.
            self.write(prediction_table(file, body) + "\n", sys.stdout)
        warning = untrained_warning(body)
        if warning is not None and warning not in self._warned:
            self._warned.add(warning)
            self.write(warning, sys.stderr)


async def classify_all(
    client: GatewayClient,
    files: list[Path],
    top_k: int | None,
    raw: bool,
    concurrency: int,
    deliver: Deliver,
) -> None:
    """Send every file with at most `concurrency` requests in flight; `deliver` each answer."""
    pending: Iterator[tuple[int, Path]] = enumerate(files)

    async def work() -> None:
        # One iterator shared by every worker: next() never yields to the loop, so
        # no two workers can take the same file.
        for index, file in pending:
            deliver(index, file, await client.predict(file, top_k, raw))

    await asyncio.gather(*(work() for _ in range(min(concurrency, len(files)))))


def run_predict(arguments: argparse.Namespace, transport: AsyncBaseTransport | None = None) -> int:
    """The `predict` command; returns the exit code."""
    try:
        files = expand_inputs(arguments.images)
    except InputError as exc:
        for message in exc.messages:
            print(f"mlpipe predict: error: {message}", file=sys.stderr)
        return 2
    show_bar = arguments.progress or (len(files) >= PROGRESS_FROM and sys.stderr.isatty())
    return asyncio.run(_predict(arguments, files, show_bar, transport))


async def _predict(
    arguments: argparse.Namespace,
    files: list[Path],
    show_bar: bool,
    transport: AsyncBaseTransport | None,
) -> int:
    # Imported here: only a run that draws a bar needs tqdm.
    from tqdm import tqdm

    with tqdm(total=len(files), unit="image", file=sys.stderr, disable=not show_bar) as bar:

        def write(line: str, stream: TextIO) -> None:
            # tqdm.write clears the bar, prints the line and draws the bar again.
            tqdm.write(line, file=stream)

        printer = Printer(as_json=arguments.json, write=write)
        in_order = InOrder(printer.emit)

        def deliver(index: int, file: Path, answer: Answer) -> None:
            in_order.deliver(index, file, answer)
            bar.update(1)

        async with GatewayClient(
            arguments.url, arguments.api_key, arguments.timeout, arguments.concurrency, transport
        ) as client:
            await classify_all(
                client, files, arguments.top_k, arguments.raw, arguments.concurrency, deliver
            )
    if printer.unauthorized:
        print(KEY_HINT, file=sys.stderr)
    return 1 if printer.failures else 0
