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

import json
import os
import pwd
import re
import shutil
from pathlib import Path
from typing import Any

from processes import ROOT, Process, answers, free_port

CONFIG = ROOT / "deploy" / "nginx" / "nginx.conf"
HEALTH_PATH = "/nginx-health"
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


def access_log(run_dir: Path) -> list[dict[str, Any]]:
    """The JSON lines nginx wrote to its access log (log_format `upstreams`)."""
    path = run_dir / "access.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def upstreams_tried(entry: dict[str, Any]) -> list[str]:
    """The replicas one request went to, in order: more than one means it was retried."""
    return [address.strip() for address in str(entry["upstream_addr"]).split(",")]
