"""Three gateway replicas behind Debian's nginx, running deploy/nginx/nginx.conf.

The `scaled` compose profile's proxy, proven without Docker: three gateway
processes predict over gRPC from the session's TF Serving double, and nginx
runs the shipped configuration with only the machine's lines rewritten
(test/nginx_front.py). Requests spread evenly (counted by each gateway, not by
the client), and a replica killed with SIGKILL in the middle of a load costs
no client a failed request: nginx re-sends the buffered POST to another one.
"""

import asyncio
import difflib
import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from nginx_front import (
    CONFIG,
    MACHINE_DIRECTIVES,
    address_of,
    directive_of,
    gateway_replicas,
    logged,
    render_config,
    running_front,
    upstreams_tried,
)
from processes import Process

REPLICAS = 3
# The figures: 1,000 requests, each replica's share within 10% of the mean.
REQUESTS = 1000
SHARE_TOLERANCE = 0.10
CONCURRENCY = 8
KILL_PHASE_REQUESTS = 200
# Answers received before the SIGKILL: the load is under way, most of it still to come.
KILL_AFTER = 40


@dataclass
class Load:
    """What the clients of one load saw, and the request ids they sent."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def served(process: Process) -> int:
    """POST /predict requests this gateway answered 200, by its own count."""
    response = httpx.get(f"{process.url}/metrics", timeout=10)
    response.raise_for_status()
    count: int = response.json()["successful_requests_total"]
    return count


async def post_many(
    url: str,
    image: bytes,
    total: int,
    tag: str,
    on_answer: Callable[[int], None] | None = None,
) -> Load:
    """POST /predict `total` times over CONCURRENCY connections; `on_answer(n)` after each.

    Each request's X-Request-ID is `tag` and a number: nginx's log lines of this load stand out.
    """
    load = Load()
    answered = 0
    remaining = total

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal answered, remaining
        while remaining > 0:
            remaining -= 1
            try:
                response = await client.post(
                    "/predict",
                    files={"file": ("cat.jpg", image)},
                    headers={"X-Request-ID": f"{tag}{remaining}"},
                )
            except httpx.HTTPError as exc:
                load.statuses[0] += 1
                load.failures.append(repr(exc))
            else:
                load.statuses[response.status_code] += 1
                if response.status_code != 200 or len(response.json()["predictions"]) != 5:
                    load.failures.append(f"{response.status_code} {response.text[:200]}")
            answered += 1
            if on_answer is not None:
                on_answer(answered)

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))
    return load


@pytest.fixture(scope="module")
def replicas(double: Process, model_root: Path, logs: Path) -> Iterator[list[Process]]:
    """Three gateways in TF Serving mode (gRPC) on the session's double, started together."""
    with gateway_replicas(double, model_root, str(logs / "nginx-replica"), REPLICAS) as processes:
        yield processes


@pytest.fixture(scope="module")
def front(replicas: list[Process], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """Debian's nginx with the shipped configuration, proxying to the three replicas."""
    with running_front(replicas, tmp_path_factory.mktemp("nginx")) as process:
        yield process


def test_only_the_machine_lines_of_the_shipped_config_are_rewritten(tmp_path: Path) -> None:
    shipped = CONFIG.read_text().splitlines()
    replicas = ["127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"]
    rendered = render_config(CONFIG.read_text(), 1000, replicas, tmp_path).splitlines()
    rewritten: set[str] = set()
    matcher = difflib.SequenceMatcher(a=shipped, b=rendered, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for line in shipped[i1:i2]:
            name = directive_of(line)
            assert name in MACHINE_DIRECTIVES, f"rewrote a proxying line: {line.strip()!r}"
            rewritten.add(name)
        assert all(str(tmp_path) in line or "127.0.0.1:" in line for line in rendered[j1:j2])
    # Every machine line was rewritten: none still points into a container.
    assert rewritten == MACHINE_DIRECTIVES
    # The upstream keeps its passive health parameters, once per replica.
    (shipped_server,) = [line for line in shipped if re.match(r"\s*server\s+[^{\s]+\s", line)]
    health = re.findall(r"(?:max_fails|fail_timeout)=\S+?(?=[\s;])", shipped_server)
    assert len(health) == 2, shipped_server
    servers = [line.strip() for line in rendered if re.match(r"\s*server\s+127\.0\.0\.1:", line)]
    assert servers == [f"server {address} {' '.join(health)};" for address in replicas]


def test_requests_spread_evenly_across_the_replicas(
    front: Process, replicas: list[Process], cat_jpeg: bytes
) -> None:
    before = [served(replica) for replica in replicas]
    load = asyncio.run(post_many(front.url, cat_jpeg, REQUESTS, "spread-"))
    assert load.statuses == {200: REQUESTS}, load.failures[:5]
    shares = [served(replica) - count for replica, count in zip(replicas, before, strict=True)]
    assert sum(shares) == REQUESTS
    mean = REQUESTS / REPLICAS
    # The figures, for `pytest -s` (docs/load-balancing.md quotes a run).
    print(f"\n{REQUESTS} requests through nginx: per replica {shares} (mean {mean:.1f})")
    for share in shares:
        assert abs(share - mean) <= SHARE_TOLERANCE * mean, f"shares {shares}"


def test_request_ids_pass_through_nginx(front: Process, cat_jpeg: bytes) -> None:
    files = {"file": ("cat.jpg", cat_jpeg)}
    own = httpx.post(
        f"{front.url}/predict", files=files, headers={"X-Request-ID": "client-42"}, timeout=60
    )
    assert own.status_code == 200
    assert own.headers["X-Request-ID"] == "client-42"
    # Without one, nginx's id goes to the gateway, which answers with it; the log has it too.
    minted = httpx.post(f"{front.url}/predict", files=files, timeout=60)
    assert minted.status_code == 200
    request_id = minted.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    (entry,) = logged(front, request_id, 1)
    assert entry["uri"] == "/predict"


def test_a_replica_killed_mid_load_fails_no_client_request(
    front: Process, replicas: list[Process], cat_jpeg: bytes
) -> None:
    victim, *survivors = replicas
    assert victim.popen is not None
    survivors_before = [served(replica) for replica in survivors]

    def kill_victim(answered: int) -> None:
        if answered == KILL_AFTER:
            assert victim.popen is not None
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait(timeout=10)

    load = asyncio.run(post_many(front.url, cat_jpeg, KILL_PHASE_REQUESTS, "kill-", kill_victim))
    assert victim.popen.returncode == -signal.SIGKILL
    assert load.statuses == {200: KILL_PHASE_REQUESTS}, load.failures[:5]

    entries = logged(front, "kill-", KILL_PHASE_REQUESTS)
    assert len(entries) == KILL_PHASE_REQUESTS
    assert all(entry["status"] == 200 for entry in entries)
    answered_by = Counter(upstreams_tried(entry)[-1] for entry in entries)
    # The survivors took over: together with what the victim answered before it
    # died, their own counts cover every request.
    taken = sum(served(r) - n for r, n in zip(survivors, survivors_before, strict=True))
    assert taken + answered_by[address_of(victim)] == KILL_PHASE_REQUESTS
    assert taken > KILL_PHASE_REQUESTS - KILL_AFTER - CONCURRENCY
    # Some requests went to the dead replica first and were re-sent: the retry
    # of POST /predict, not luck, is why no client saw a failure.
    retried = [entry for entry in entries if len(upstreams_tried(entry)) > 1]
    print(
        f"\n{KILL_PHASE_REQUESTS} requests, SIGKILL to one replica after {KILL_AFTER} answers: "
        f"0 failed, {len(retried)} re-sent to a survivor, survivors took {taken}"
    )
    assert retried, "no request was retried: the kill did not happen mid-load"
    for entry in retried:
        tried = upstreams_tried(entry)
        assert tried[0] == address_of(victim)
        assert tried[-1] in {address_of(r) for r in survivors}
