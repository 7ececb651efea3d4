"""SSRF: the preview fetch of URL records never connects to a non-global
address, however the address is spelled, whatever DNS answers and wherever a
redirect points. A canary HTTP server on 127.0.0.1 proves no connection is made."""

import http.server
import socket
import threading
import time

import pytest

from ximilar_portal.lib import urlfetch
from ximilar_portal.records.models import Record
from ximilar_portal.records.services import record_fetch_preview

from .conftest import client_for, jpeg_bytes


class Server:
    """A tiny HTTP server on a loopback address that records every connection."""

    def __init__(self, host="127.0.0.1", routes=None):
        self.connections = []
        self.requests = []
        self.routes = routes or {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                status, headers, body = server.routes.get(self.path, (200, {}, b"canary"))
                if callable(body):
                    body = body()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Listener(http.server.ThreadingHTTPServer):
            def verify_request(self, request, client_address):
                server.connections.append(client_address)
                return True

        self.httpd = Listener((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canary():
    server = Server("127.0.0.1")
    yield server
    server.stop()


@pytest.fixture
def fake_dns(monkeypatch):
    """Names that answer with private addresses (or a mix)."""
    answers = {
        "evil.example": ["127.0.0.1"],
        "internal.example": ["10.0.0.5"],
        "metadata.example": ["169.254.169.254"],
        "mixed.example": ["93.184.216.34", "127.0.0.1"],
        "v6.example": ["::1"],
        "mapped.example": ["::ffff:127.0.0.1"],
    }
    real = urlfetch.resolve

    def resolve(host, port):
        return answers[host] if host in answers else real(host, port)

    monkeypatch.setattr(urlfetch, "resolve", resolve)


@pytest.fixture
def public(monkeypatch):
    """A stand-in for a public server: 127.0.0.2 is treated as global, nothing
    else on loopback is. It redirects wherever a test says."""
    allowed = urlfetch.address_allowed
    monkeypatch.setattr(urlfetch, "address_allowed", lambda a: a == "127.0.0.2" or allowed(a))
    server = Server("127.0.0.2")
    yield server
    server.stop()


def hostile_urls(port):
    return [
        f"http://127.0.0.1:{port}/",
        f"http://127.1:{port}/",
        f"http://127.0.1:{port}/",
        f"http://0x7f.1:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://2130706433:{port}/",
        f"http://017700000001:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://localhost:{port}/",
        f"http://LOCALHOST:{port}/",
        f"http://localhost.:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://0:{port}/",
        f"http://[::1]:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[::127.0.0.1]:{port}/",
        f"http://[0:0:0:0:0:0:0:1]:{port}/",
        f"http://[::]:{port}/",
        f"http://[64:ff9b::7f00:1]:{port}/",
        f"http://[2002:7f00:1::]:{port}/",
        f"http://10.0.0.1:{port}/",
        f"http://172.16.0.1:{port}/",
        f"http://192.168.1.1:{port}/",
        f"http://100.64.0.1:{port}/",
        f"http://169.254.169.254:{port}/latest/meta-data/",
        f"http://[fe80::1]:{port}/",
        f"http://[fd00::1]:{port}/",
        f"http://[fc00::1]:{port}/",
        f"http://224.0.0.1:{port}/",
        f"http://[ff02::1]:{port}/",
        f"http://255.255.255.255:{port}/",
        f"http://240.0.0.1:{port}/",
        f"http://198.18.0.1:{port}/",
        f"http://evil.example:{port}/",
        f"http://internal.example:{port}/",
        f"http://metadata.example:{port}/",
        f"http://mixed.example:{port}/",
        f"http://v6.example:{port}/",
        f"http://mapped.example:{port}/",
        f"http://user:pass@example.com:{port}/",
        f"file:///etc/passwd#{port}",
        f"gopher://127.0.0.1:{port}/",
        f"ftp://127.0.0.1:{port}/",
    ]


def test_there_are_enough_hostile_urls():
    assert len(hostile_urls(1)) >= 30


def test_no_hostile_url_gets_a_connection(canary, fake_dns):
    for url in hostile_urls(canary.port):
        with pytest.raises(urlfetch.FetchRefused) as refused:
            urlfetch.fetch(url, max_bytes=10_000, timeout=2)
        assert str(refused.value), url
    assert canary.connections == []


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:{port}/",
        "http://localhost:{port}/",
        "http://evil.example:{port}/",
        "http://[::ffff:127.0.0.1]:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_a_redirect_from_public_to_private_is_not_followed(canary, public, fake_dns, target):
    public.routes["/go"] = (302, {"Location": target.format(port=canary.port)}, b"")
    with pytest.raises(urlfetch.FetchRefused):
        urlfetch.fetch(public.url + "/go", max_bytes=10_000, timeout=2)
    assert len(public.connections) == 1
    assert canary.connections == []


def test_a_chain_of_public_redirects_is_followed_then_capped(public):
    image = jpeg_bytes()
    public.routes["/a"] = (301, {"Location": "/b"}, b"")
    public.routes["/b"] = (200, {"Content-Type": "image/jpeg"}, image)
    fetched = urlfetch.fetch(public.url + "/a", max_bytes=100_000, timeout=2)
    assert fetched.body == image and fetched.url.endswith("/b")
    public.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    with pytest.raises(urlfetch.FetchRefused, match="redirects"):
        urlfetch.fetch(public.url + "/loop", max_bytes=100_000, timeout=2)


def test_size_and_time_are_capped(public):
    public.routes["/big"] = (200, {}, b"x" * 50_000)
    with pytest.raises(urlfetch.FetchRefused, match="larger"):
        urlfetch.fetch(public.url + "/big", max_bytes=10_000, timeout=2)

    def slow():
        time.sleep(1.5)
        return b"late"

    public.routes["/slow"] = (200, {}, slow)
    started = time.monotonic()
    with pytest.raises(urlfetch.FetchRefused, match="timed out|too long"):
        urlfetch.fetch(public.url + "/slow", max_bytes=10_000, timeout=0.5)
    assert time.monotonic() - started < 1.4


def test_the_connected_address_is_checked_too(monkeypatch, canary):
    """If resolving and connecting disagree (DNS rebinding, a proxy in the
    stack), the socket's peer address decides."""
    monkeypatch.setattr(urlfetch, "resolve", lambda host, port: ["127.0.0.1"])
    checks = iter([True])  # the resolved address passes once, the peer check must fail
    real = urlfetch.address_allowed
    monkeypatch.setattr(urlfetch, "address_allowed", lambda a: next(checks, None) or real(a))
    with pytest.raises(urlfetch.FetchRefused, match="not public"):
        urlfetch.fetch(f"http://rebind.example:{canary.port}/", max_bytes=1000, timeout=2)
    time.sleep(0.1)
    assert canary.requests == []  # the socket was closed before a byte was sent


@pytest.mark.django_db
def test_a_url_record_that_cannot_be_fetched_is_kept_without_preview(owner, canary, fake_dns):
    client = client_for(owner)
    urls = (
        f"http://evil.example:{canary.port}/a.jpg\nhttp://localhost:{canary.port}/b.jpg\nnot a url"
    )
    response = client.post("/records/urls/", {"urls": urls, "category": "c"})
    assert response.status_code == 302
    records = list(Record.objects.order_by("pk"))
    assert [r.image_url for r in records] == urls.splitlines()[:2]
    for record in records:
        record_fetch_preview(record_id=record.pk)
        record.refresh_from_db()
        assert (record.preview, record.thumbnail.name) == ("none", "")
        assert "not a public internet address" in record.preview_error
        assert record.as_ximilar()["_url"] == record.image_url
    assert canary.connections == []
    page = client.get(response.url).content.decode()
    assert "no preview" in page and "not an http or https address" in page


@pytest.mark.django_db
def test_a_url_record_from_a_public_host_gets_a_thumbnail(owner, public):
    public.routes["/cat.png"] = (200, {"Content-Type": "image/png"}, jpeg_bytes(fmt="PNG"))
    client_for(owner).post("/records/urls/", {"urls": public.url + "/cat.png"})
    record = Record.objects.get()
    assert record.preview == "pending"
    record_fetch_preview(record_id=record.pk)
    record.refresh_from_db()
    assert record.preview == "ready" and record.thumbnail.name.endswith(".webp")


def test_socket_module_is_what_we_think(canary):
    """The canary sees a plain TCP connection when one is made on purpose."""
    socket.create_connection(("127.0.0.1", canary.port), timeout=1).close()
    deadline = time.monotonic() + 1
    while not canary.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(canary.connections) == 1
