"""The sandbox's HTTP side: a threaded standard-library server that checks the
token, applies the injected faults, dispatches to a handler, marks the answer
as sandbox output and keeps a request log with tokens redacted.

    server = SandboxServer(tokens=("tok",)).start()
    server.url          # "http://127.0.0.1:PORT/"
    server.faults.status_code = 503
    server.requests()   # [LoggedRequest(...), ...]
    server.stop()

Control endpoints, without a token, for a sandbox in its own process:
GET /_sandbox/log, GET and POST /_sandbox/faults, POST /_sandbox/reset.
"""

import json
import random
import sys
import threading
import time
import traceback
import urllib.parse
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import routes
from .faults import Faults, RateLimiter
from .protocol import SERVICE_OUTPUT_FIELDS, BadRequest, Call, Reply, status
from .similarity import CollectionStore

__all__ = ["Faults", "LoggedRequest", "SandboxServer"]

DEFAULT_TOKEN = "sandbox-demo-token"  # noqa: S105 - a public demo token, not a secret
SANDBOX_MARK = {"note": "computed locally by the Ximilar Portal sandbox, not by Ximilar"}
MAX_BODY_BYTES = 64 * 1024 * 1024
LOG_LIMIT = 10_000  # the newest requests; a long `make run` must not grow without bound
FORCED_TEXT = {
    400: "sandbox: injected bad request",
    401: "Invalid token.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    429: "Request was throttled.",
}


@dataclass
class LoggedRequest:
    method: str
    path: str
    record_count: int  # `records` in the body, plus one for a `query_record`
    time: float  # time.time() when the request arrived (what a rate limit governs)
    status: int
    token_hint: str  # "…abcd": never the whole token
    # The `_id`s sent (records, then the query record): a load run counts how
    # often each record was billed.
    record_ids: list[str] = field(default_factory=list)


@dataclass
class Answer:
    """What goes back over HTTP."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Incoming:
    method: str
    target: str  # path and query string, as sent
    headers: object  # http.client.HTTPMessage
    body: bytes


class SandboxState:
    """What the API remembers between calls: collections and used credits."""

    def __init__(self, capacity: int):
        self.collections = CollectionStore(capacity)
        self._credits: dict[str, int] = {}
        self._lock = threading.Lock()

    def credits_used(self, token: str) -> int:
        with self._lock:
            return self._credits.get(token, 0)

    def add_credits(self, token: str, count: int) -> None:
        with self._lock:
            self._credits[token] = self._credits.get(token, 0) + count

    def clear(self) -> None:
        self.collections.clear()
        with self._lock:
            self._credits.clear()


def token_hint(token: str) -> str:
    if len(token) >= 8:
        return "…" + token[-4:]
    return "…" if token else ""


def token_from(authorization: str | None) -> str:
    """The token from `Token <t>` or `JWT <t>`; "" when there is none."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() in ("token", "jwt") else ""


def parse_body(raw: bytes) -> tuple[dict, str | None]:
    """The JSON object and no error, or {} and what is wrong with it."""
    if not raw.strip():
        return {}, None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        return {}, f"JSON parse error - {error}"
    if not isinstance(body, dict):
        return {}, "JSON parse error - expected an object"
    return body, None


def record_count(body: dict) -> int:
    records = body.get("records")
    count = len(records) if isinstance(records, list) else 0
    return count + (1 if isinstance(body.get("query_record"), dict) else 0)


def record_ids(body: dict) -> list[str]:
    records = body.get("records")
    sent = list(records) if isinstance(records, list) else []
    if isinstance(body.get("query_record"), dict):
        sent.append(body["query_record"])
    return [str(r["_id"]) for r in sent if isinstance(r, dict) and "_id" in r]


def json_answer(code: int, body, headers: dict | None = None, elapsed: float = 0.0) -> Answer:
    if isinstance(body, dict):
        if "status" in body and "statistics" not in body:
            body["statistics"] = {"processing time": round(elapsed, 4)}
        body["_sandbox"] = dict(SANDBOX_MARK)
    data = json.dumps(body, ensure_ascii=False).encode()
    return Answer(code, data, dict(headers or {}))


class SandboxServer:
    def __init__(
        self,
        *,
        host="127.0.0.1",
        port=0,
        tokens=(DEFAULT_TOKEN,),
        faults: Faults | None = None,
        capacity=1000,
    ):
        self.host, self.port = host, port
        self.tokens = frozenset(tokens)
        self.faults = faults or Faults()
        self.state = SandboxState(capacity)
        self._log: deque[LoggedRequest] = deque(maxlen=LOG_LIMIT)
        self._log_lock = threading.Lock()
        self._limiter = RateLimiter()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "SandboxServer":
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _RequestHandler)
        self._httpd.sandbox = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests sleeping on latency or hang
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
            return list(self._log)

    def reset(self) -> None:
        with self._log_lock:
            self._log.clear()
        self.faults.clear()
        self.state.clear()
        self._limiter.clear()

    # --- One request -----------------------------------------------------------

    def answer(self, incoming: Incoming) -> Answer:
        received = time.time()
        target = urllib.parse.urlsplit(incoming.target)
        path = urllib.parse.unquote(target.path)
        if path.strip("/").startswith("_sandbox"):
            return self._control(incoming.method, path.strip("/"), incoming.body)
        body, body_error = parse_body(incoming.body)
        token = token_from(incoming.headers.get("Authorization"))
        call = Call(
            method=incoming.method,
            path=path.strip("/"),
            query=dict(urllib.parse.parse_qsl(target.query)),
            body=body,
            headers=incoming.headers,
            token=token,
            base_url=self.url,
            state=self.state,
        )
        answer = self._answer_api(call, body_error)
        count, hint = record_count(body), token_hint(token)
        entry = LoggedRequest(
            call.method, path, count, received, answer.status, hint, record_ids(body)
        )
        with self._log_lock:
            self._log.append(entry)
        return answer

    def _answer_api(self, call: Call, body_error: str | None) -> Answer:
        self._sleep_for_faults()
        route = routes.resolve(call.path)
        if route is None:
            return json_answer(404, {"detail": "Not found."})
        if not route.public and call.token not in self.tokens:
            return json_answer(401, {"detail": "Invalid token."})
        handler = route.handlers.get(call.method)
        if handler is None:
            return json_answer(405, {"detail": f'Method "{call.method}" not allowed.'})
        failure = self._injected_failure(call.token)
        if failure is not None:
            return failure
        if body_error:
            return json_answer(400, {"detail": body_error})
        call.params = dict(route.params)
        return self._dispatch(handler, call)

    def _sleep_for_faults(self) -> None:
        delay = self.faults.latency_ms / 1000 + self.faults.hang_seconds
        if delay > 0:
            self._stopping.wait(delay)

    def _injected_failure(self, token: str) -> Answer | None:
        faults = self.faults
        wait = self._limiter.seconds_to_wait(token, faults.rate_limit_rps)
        if wait:
            detail = f"Request was throttled. Expected available in {wait} seconds."
            retry_after = faults.retry_after or str(wait)
            return json_answer(429, {"detail": detail}, {"Retry-After": retry_after})
        code = faults.status_code
        if code is None and faults.error_rate and random.random() < faults.error_rate:
            code = 500
        if code is None:
            return None
        headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
        text = FORCED_TEXT.get(code, f"sandbox: injected HTTP {code}")
        return json_answer(code, {"detail": text}, headers)

    def _dispatch(self, handler, call: Call) -> Answer:
        started = time.monotonic()
        try:
            reply = handler(call)
        except BadRequest as error:
            reply = error.reply()
        except Exception:  # a sandbox bug must still produce an HTTP answer
            traceback.print_exc()
            reply = Reply({"detail": "sandbox: internal error"}, http_status=500)
        if reply.http_status == 200:
            self.state.add_credits(call.token, reply.credits)
            self._fail_records(reply.body)
        elapsed = time.monotonic() - started
        answer = json_answer(reply.http_status, reply.body, reply.headers, elapsed)
        if self.faults.malformed_json:
            return Answer(200, answer.body[: len(answer.body) // 2], answer.headers)
        return answer

    def _fail_records(self, body: dict) -> None:
        """Only analysed records (those with a `_status`) fail; a collection's
        insert answer lists records that are stored whatever it says."""
        records = body.get("records")
        if not isinstance(records, list):
            return
        failing, rate = set(self.faults.fail_record_ids), self.faults.record_failure_rate
        for record in records:
            if "_status" not in record:
                continue
            chosen = "_id" in record and str(record["_id"]) in failing
            if chosen or (rate and random.random() < rate):
                for name in SERVICE_OUTPUT_FIELDS:
                    record.pop(name, None)
                record["_status"] = status(400, "sandbox: injected record failure")

    # --- Control endpoints -----------------------------------------------------

    def _control(self, method: str, path: str, raw_body: bytes) -> Answer:
        action = (method, path.removeprefix("_sandbox/"))
        if action == ("GET", "log"):
            return json_answer(200, [asdict(entry) for entry in self.requests()])
        if action == ("GET", "faults"):
            return json_answer(200, self.faults.to_json())
        if action == ("POST", "faults"):
            return self._set_faults(raw_body)
        if action == ("POST", "reset"):
            self.reset()
            return json_answer(200, {"reset": True})
        return json_answer(404, {"detail": "Not found."})

    def _set_faults(self, raw_body: bytes) -> Answer:
        body, error = parse_body(raw_body)
        if error:
            return json_answer(400, {"detail": error})
        try:
            self.faults.update_from_json(body)
        except ValueError as problem:
            return json_answer(400, {"detail": str(problem)})
        return json_answer(200, self.faults.to_json())


def body_problem(headers) -> tuple[int, str] | None:
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return 411, "Send the body with a Content-Length."
    length = headers.get("Content-Length") or "0"
    if not length.isdigit():
        return 400, "Bad Content-Length."
    if int(length) > MAX_BODY_BYTES:
        return 413, "Request body too large."
    return None


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a hanging request must not hold up stop()
    sandbox: SandboxServer

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (a read-timeout test); nothing to report
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with sessions expect
    timeout = 60  # close idle keep-alive connections
    # Headers and body are written apart: with Nagle on, the body waited for
    # the client's delayed ACK, 40 ms on every request.
    disable_nagle_algorithm = True

    def version_string(self):
        return "XimilarSandbox/1.0"

    def do_GET(self):
        body = self._read_body()
        if body is None:
            return
        incoming = Incoming(self.command, self.path, self.headers, body)
        self._send(self.server.sandbox.answer(incoming))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes | None:
        problem = body_problem(self.headers)
        if problem is not None:
            self.close_connection = True  # the unread body would garble the next request
            self._send(json_answer(problem[0], {"detail": problem[1]}))
            return None
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, answer: Answer) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.body)))
            self.send_header("X-Ximilar-Sandbox", "1")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)
        except ConnectionError:
            self.close_connection = True

    def log_message(self, format, *args):
        """Silent: SandboxServer keeps its own log, with tokens redacted."""
