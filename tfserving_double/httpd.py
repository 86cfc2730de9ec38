"""HTTP/1.1 plumbing shared by the REST port and the control port.

TF Serving's REST server is libevent's evhttp (TFS/util/net_http/server/internal/
evhttp_server.cc, evhttp_request.cc): keep-alive connections, request bodies
with `Content-Encoding: gzip` decompressed up to 100 MB before the handler sees
them (a body that fails to decompress reaches the handler empty), and the path
handed to handlers is the path plus `?query`. Reference:
docs/tf-serving-protocol.md §1.

The double uses `http.server.ThreadingHTTPServer` (one thread per connection)
bound to `--listen_host` (127.0.0.1 unless given, flags.py). An application
is a callable `(method, path, body) -> Response`; the server knows nothing
about TF Serving.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_GZIP_BYTES = 100 * 1024 * 1024
IDLE_TIMEOUT_SECONDS = 300

log = logging.getLogger("tfserving_double")


@dataclass(frozen=True)
class Response:
    """What an application answers; `reset` drops the connection without answering."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    reset: bool = False


App = Callable[[str, str, bytes], Response]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tfserving_double"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def _serve(self) -> None:
        body = self._read_body()
        response = self.server.app(self.command, self.path, body)
        if response.reset:
            self._reset_connection()
            return
        self._write(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
        if body and "gzip" in self.headers.get("Content-Encoding", ""):
            body = _gunzip(body)
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _write(self, response: Response) -> None:
        reason = _REASONS.get(response.status, "Unknown")
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            *(f"{name}: {value}" for name, value in response.headers),
        ]
        if response.close:
            lines.append("Connection: close")
            self.close_connection = True
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + response.body)

    def _reset_connection(self) -> None:
        # SO_LINGER 0 makes close() send a TCP RST: the client sees a reset, not an answer.
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


_REASONS = {status.value: status.phrase for status in HTTPStatus}


def _gunzip(body: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_GZIP_BYTES + 1)
    except zlib.error:
        return b""
    return b"" if len(data) > MAX_GZIP_BYTES else data


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, host: str, port: int, app: App) -> None:
        self.app = app
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can stall.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class HttpServer:
    """A running server on host:port (port 0 picks a free port)."""

    def __init__(self, host: str, port: int, app: App, name: str) -> None:
        self._server = _Server(host, port, app)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        """Start accepting connections in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting connections and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
