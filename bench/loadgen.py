"""A lean HTTP load generator: asyncio, raw keep-alive HTTP/1.1, one prebuilt request.

It shares the machine's cores with what it measures, so each worker owns one
connection and does the least work per request: write the prebuilt bytes, read
the head in one call, then exactly Content-Length body bytes. Runs are bounded
by a request count and a deadline; a request still open at the deadline plus
the grace period is cancelled and counted as a failure.
"""

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from bench.stats import Measurement, summarise

_GRACE_S = 30.0


@dataclass
class _Run:
    """What the workers of one phase share."""

    deadline: float
    budget: int
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sample: bytes = b""


@dataclass(frozen=True)
class LoadResult:
    """One phase's measurement, its status counts (0 = connection error) and one 200 body."""

    measurement: Measurement
    statuses: dict[int, int]
    sample: bytes
    client_cpu_s: float


def multipart_request(
    host: str, port: int, path: str, data: bytes, filename: str = "image.jpg", copies: int = 1
) -> bytes:
    """A complete keep-alive `POST path` with `data` as the multipart field `file`
    (`copies` times over: several `file` fields, as POST /predict/batch takes them)."""
    boundary = uuid.uuid4().hex
    part = b"".join(
        (
            f"--{boundary}\r\n".encode(),
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode(),
            b"Content-Type: image/jpeg\r\n\r\n",
            data,
            b"\r\n",
        )
    )
    body = part * copies + f"--{boundary}--\r\n".encode()
    return _post(host, port, path, f"multipart/form-data; boundary={boundary}", body)


def raw_request(host: str, port: int, path: str, data: bytes) -> bytes:
    """A complete keep-alive `POST path` whose whole body is the image (no form)."""
    return _post(host, port, path, "image/jpeg", data)


def _post(host: str, port: int, path: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    ).encode()
    return head + body


async def drive(
    host: str,
    port: int,
    request: bytes,
    concurrency: int,
    duration_s: float,
    max_requests: int,
    images_per_request: int = 1,
) -> LoadResult:
    """Send `request` over `concurrency` connections for `duration_s` (or `max_requests`).

    Throughput counts images: `images_per_request` for each 200 (a batch request's files).
    """
    connections = [await asyncio.open_connection(host, port) for _ in range(concurrency)]
    try:
        cpu_before = time.process_time()
        began = time.perf_counter()
        run = await _phase(host, port, connections, request, duration_s, max_requests)
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_before
    finally:
        for _, writer in connections:
            writer.close()
    ok = run.statuses.get(200, 0)
    failures = sum(run.statuses.values()) - ok
    measurement = summarise(
        run.latencies_ms, items=ok * images_per_request, failures=failures, elapsed_s=elapsed
    )
    return LoadResult(measurement, dict(sorted(run.statuses.items())), run.sample, cpu)


async def _phase(
    host: str,
    port: int,
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    request: bytes,
    duration_s: float,
    max_requests: int,
) -> _Run:
    run = _Run(deadline=time.perf_counter() + duration_s, budget=max_requests)
    workers = [
        asyncio.create_task(_worker(host, port, connections, slot, request, run))
        for slot in range(len(connections))
    ]
    done, pending = await asyncio.wait(workers, timeout=duration_s + _GRACE_S)
    for task in pending:
        task.cancel()
        run.statuses[0] = run.statuses.get(0, 0) + 1
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # a bug in the worker should not pass silently
    return run


async def _worker(
    host: str,
    port: int,
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    slot: int,
    request: bytes,
    run: _Run,
) -> None:
    reader, writer = connections[slot]
    while run.budget > 0 and time.perf_counter() < run.deadline:
        run.budget -= 1
        began = time.perf_counter()
        try:
            writer.write(request)
            status, body, keep_alive = await _read_response(reader)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            status, body, keep_alive = 0, b"", False
        run.latencies_ms.append((time.perf_counter() - began) * 1000.0)
        run.statuses[status] = run.statuses.get(status, 0) + 1
        if status == 200 and not run.sample:
            run.sample = body
        if not keep_alive:
            writer.close()
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.05)  # the next write fails fast and retries
                continue
            connections[slot] = (reader, writer)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the connection stays open, for one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")  # at most the reader's 64 KiB limit
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = -1
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    if chunked:
        return status, await _read_chunked(reader), keep_alive
    if length < 0:  # no framing: the body runs to the end of the connection
        return status, await reader.read(), False
    return status, await reader.readexactly(length), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
