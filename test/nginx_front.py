"""Debian's nginx in front of gateway processes, running deploy/nginx/nginx.conf as shipped.

The compose profile's nginx finds the replicas through Docker's DNS and writes
under the container's /tmp. Here only the lines that name the machine change:
where nginx listens, the upstream's server line (one line per replica, a
127.0.0.1 port each), the pid file, the access log and the temp paths. Every
proxying directive (balancing, passive health checks, retries, buffering,
timeouts, headers) is the file's own, which test_nginx_replicas.py checks by
diffing the two texts. The end-to-end test and bench/replicas.py both start
nginx through `nginx_front`.
"""

import contextlib
import json
import os
import pwd
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from processes import ROOT, Process, answers, free_port, gateway_for, wait_until

CONFIG = ROOT / "deploy" / "nginx" / "nginx.conf"
HEALTH_PATH = "/nginx-health"
# nginx writes a request's log line after its response has gone out.
LOG_WAIT_SECONDS = 10.0
# Directives whose lines say where things are on a machine; nothing else is rewritten.
MACHINE_DIRECTIVES = frozenset(
    {
        "listen",
        "server",
        "pid",
        "access_log",
        "client_body_temp_path",
        "proxy_temp_path",
        "fastcgi_temp_path",
        "uwsgi_temp_path",
        "scgi_temp_path",
    }
)
# `server ADDRESS [parameters];` inside an upstream, never the `server {` block.
_UPSTREAM_SERVER = re.compile(r"^(\s*)server\s+(\S+)((?:\s+[^\s;{]+)*)\s*;\s*$")
_DIRECTIVE = re.compile(r"^(\s*)(\w+)\s+([^;{]*?)\s*;\s*$")


def directive_of(line: str) -> str | None:
    """The directive a simple `name args;` line sets, or None for blocks, comments, blanks."""
    match = _DIRECTIVE.match(line)
    return match.group(2) if match else None


def render_config(original: str, port: int, replicas: list[str], run_dir: Path) -> str:
    """The shipped configuration with only the machine's lines rewritten for `run_dir`."""
    lines: list[str] = []
    for line in original.splitlines():
        lines.extend(_rewrite(line, port, replicas, run_dir))
    return "\n".join(lines) + "\n"


def _rewrite(line: str, port: int, replicas: list[str], run_dir: Path) -> list[str]:
    upstream = _UPSTREAM_SERVER.match(line)
    if upstream:
        indent, _, parameters = upstream.groups()
        # Debian's nginx (1.22) predates `resolve` in open source upstreams (1.27.3),
        # and a literal address has nothing to resolve; the health parameters stay.
        kept = " ".join(p for p in parameters.split() if p != "resolve")
        return [f"{indent}server {address} {kept};" for address in replicas]
    match = _DIRECTIVE.match(line)
    if not match or match.group(2) not in MACHINE_DIRECTIVES:
        return [line]
    indent, name, arguments = match.groups()
    if name == "listen":
        return [f"{indent}listen 127.0.0.1:{port};"]
    if name == "pid":
        return [f"{indent}pid {run_dir / 'nginx.pid'};"]
    if name == "access_log":
        destination, *log_format = arguments.split()
        if destination == "off":
            return [line]
        return [f"{indent}access_log {' '.join([str(run_dir / 'access.log'), *log_format])};"]
    # A temp path: the same folder name, under run_dir.
    return [f"{indent}{name} {run_dir / Path(arguments).name};"]


def nginx_front(replicas: list[str], run_dir: Path) -> Process:
    """nginx (not yet started) proxying to `replicas` (host:port each), its files in `run_dir`."""
    executable = shutil.which("nginx") or "/usr/sbin/nginx"  # sbin: often off a user's PATH
    if not Path(executable).exists():
        raise FileNotFoundError("nginx is missing: `apt-get install nginx` (.ci/run installs it)")
    run_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = run_dir / "nginx.conf"
    config.write_text(render_config(CONFIG.read_text(), port, replicas, run_dir))
    # Started as root, nginx would hand its workers to `nobody`, who cannot enter
    # pytest's private temp folders; the container runs it unprivileged throughout.
    user = f" user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
    url = f"http://127.0.0.1:{port}"
    return Process(
        [executable, "-p", str(run_dir), "-c", str(config), "-g", f"daemon off;{user}"],
        {"PATH": os.environ.get("PATH", "")},
        run_dir / "error.log",
        ready=answers(url + HEALTH_PATH, 200),
        url=url,
    )


def address_of(process: Process) -> str:
    """`host:port` of a process's HTTP server, as an upstream's server line names it."""
    return process.url.removeprefix("http://")


@contextlib.contextmanager
def gateway_replicas(
    double: Process, model_root: Path, log_prefix: str, count: int, **env: str
) -> Iterator[list[Process]]:
    """`count` gateways in TF Serving mode (gRPC) on `double`, started together, each
    ready once its model answers; its log is `log_prefix` and its number."""
    processes = [
        gateway_for(double, model_root, Path(f"{log_prefix}-{index}.log"), **env)
        for index in range(count)
    ]
    for process in processes:
        process.ready = answers(f"{process.url}/health", 200)
    try:
        with ThreadPoolExecutor(count) as pool:
            list(pool.map(Process.start, processes))
        yield processes
    finally:
        for process in processes:
            process.stop()


@contextlib.contextmanager
def running_front(replicas: list[Process], run_dir: Path) -> Iterator[Process]:
    """Debian's nginx with the shipped configuration in front of `replicas`, started."""
    process = nginx_front([address_of(r) for r in replicas], run_dir).start(timeout=30)
    try:
        yield process
    finally:
        process.stop()


def run_dir_of(front: Process) -> Path:
    """The folder `nginx_front` gave this nginx: its config, logs and temp files."""
    return front.log_path.parent


def access_log(run_dir: Path) -> list[dict[str, Any]]:
    """The JSON lines nginx wrote to its access log (log_format `upstreams`)."""
    path = run_dir / "access.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def upstreams_tried(entry: dict[str, Any]) -> list[str]:
    """The replicas one request went to, in order: more than one means it was retried."""
    return [address.strip() for address in str(entry["upstream_addr"]).split(",")]


def logged(front: Process, prefix: str, count: int) -> list[dict[str, Any]]:
    """The access log's lines whose request id starts with `prefix`, once `count` are written."""

    def entries() -> list[dict[str, Any]]:
        lines = access_log(run_dir_of(front))
        return [e for e in lines if str(e["request_id"]).startswith(prefix)]

    wait_until(lambda: len(entries()) >= count, LOG_WAIT_SECONDS, f"{count} log lines of {prefix}")
    return entries()
