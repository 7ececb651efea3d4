"""A scripted HTTP server on 127.0.0.1 for testing the Ximilar client over real
HTTP: each test queues the replies it wants (status, headers, body) and reads
back the requests the client made.

When no reply is queued, `default` answers; the built-in one echoes the
records it was sent, each with a 200 `_status`, like a tagging service."""

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: object = None  # dict or list: sent as JSON; str or bytes: sent as they are
    headers: dict = field(default_factory=dict)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body if self.body is not None else {}).encode()


@dataclass
class Seen:
    method: str
    path: str  # without the query string
    query: dict
    headers: dict
    body: object  # parsed JSON, or the raw bytes when not JSON


def echo_records(request: Seen) -> Reply:
    records = request.body.get("records", []) if isinstance(request.body, dict) else []
    returned = [
        {**record, "_status": {"code": 200, "text": "OK", "request_id": "r"}} for record in records
    ]
    body = {
        "records": returned,
        "status": {"code": 200, "text": "OK"},
        "statistics": {"processing time": 0.5},
    }
    return Reply(200, body)


class FakeXimilar:
    def __init__(self):
        self.replies: list[Reply] = []
        self.requests: list[Seen] = []
        self.default = echo_records
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> "FakeXimilar":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def reply(self, status: int = 200, body: object = None, headers: dict | None = None) -> None:
        self.replies.append(Reply(status, body, headers or {}))

    def _answer(self, request: Seen) -> Reply:
        with self._lock:
            self.requests.append(request)
            if self.replies:
                return self.replies.pop(0)
        return self.default(request)

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real API

            def setup(self):
                super().setup()
                # Headers and body go out in two writes; without this, Nagle and
                # delayed ACKs add 40 ms to every request on a kept-alive connection.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                url = urlsplit(self.path)
                seen = Seen(self.command, url.path, parse_qs(url.query), dict(self.headers), body)
                reply = fake._answer(seen)
                data = reply.encoded()
                self.send_response(reply.status)
                headers = {"Content-Type": "application/json", **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format, *args):  # keep test output clean
                pass

        return Handler


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers: a read timeout."""

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/"

    def _accept(self):
        self._socket.settimeout(0.05)
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self._accepted.append(connection)

    def stop(self):
        self._stopping.set()
        self._thread.join(5)
        for connection in self._accepted:
            connection.close()
        self._socket.close()


class FullBacklogServer:
    """A listening socket whose accept queue is full, so new connections are
    never completed: a connect timeout, on loopback (Linux drops the SYN)."""

    def __init__(self):
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(0)
        self._fillers = []
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self._socket.getsockname())
            self._fillers.append(filler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/"

    def stop(self):
        for filler in self._fillers:
            filler.close()
        self._socket.close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connection refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
