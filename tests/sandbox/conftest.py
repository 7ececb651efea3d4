"""A sandbox on a loopback port per test, a helper to call it, and images made
with Pillow whose colours and shapes the tests know."""

import base64
import io
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image, ImageDraw

from ximilar_portal.sandbox.server import SandboxServer

TOKEN = "sandbox-test-token-1234"
OTHER_TOKEN = "sandbox-test-token-5678"
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


class Api:
    """Calls the sandbox the way a Ximilar client does."""

    def __init__(self, server: SandboxServer, token: str = TOKEN):
        self.server = server
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def post(self, path, body=None, **kwargs):
        return self.session.post(self.server.url + path, json=body or {}, timeout=10, **kwargs)

    def get(self, path, **kwargs):
        return self.session.get(self.server.url + path, timeout=10, **kwargs)

    def records(self, path, records, **options):
        """POST `records` and return the answered records, checking the call went through."""
        response = self.post(path, {"records": records, **options})
        assert response.status_code == 200, response.text
        return response.json()["records"]


@pytest.fixture
def server():
    sandbox = SandboxServer(tokens=(TOKEN, OTHER_TOKEN), capacity=5).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def api(server):
    return Api(server)


def encoded(image: Image.Image, fmt="PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def b64(image: Image.Image, fmt="PNG", **options) -> str:
    return base64.b64encode(encoded(image, fmt, **options)).decode()


def data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + b64(image)


def solid(colour, size=(60, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


def half_and_half(left=RED, right=BLUE, size=(100, 50)) -> Image.Image:
    image = solid(left, size)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def stripes(colours, size=(120, 60)) -> Image.Image:
    """Vertical stripes of equal width, one per colour, repeated twice."""
    image = Image.new("RGB", size)
    width = size[0] // (2 * len(colours))
    for index in range(2 * len(colours)):
        image.paste(colours[index % len(colours)], (index * width, 0, (index + 1) * width, size[1]))
    return image


def checkerboard(cell=8, side=200) -> Image.Image:
    image = solid(WHITE, (side, side))
    for x in range(0, side, cell):
        for y in range(0, side, cell):
            if (x // cell + y // cell) % 2:
                image.paste((0, 0, 0), (x, y, x + cell, y + cell))
    return image


def product_shot(colour=(20, 120, 30), size=(200, 200), box=(50, 60, 150, 170)) -> Image.Image:
    """A coloured rectangle on a white background, like a product photo."""
    image = solid(WHITE, size)
    image.paste(colour, box)
    return image


def scene(seed: int, size=(320, 240)) -> Image.Image:
    """A random arrangement of coloured ellipses: a stand-in for a photo."""
    rng = random.Random(seed)
    image = solid(tuple(rng.randrange(256) for _ in range(3)), size)
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        w, h = rng.randrange(20, 120), rng.randrange(20, 120)
        draw.ellipse((x, y, x + w, y + h), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


@pytest.fixture
def image_host():
    """A loopback web server for `_url` records: /red.png and /broken.png."""
    files = {"/red.png": encoded(solid(RED)), "/broken.png": b"not an image"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            data = files.get(self.path)
            self.send_response(200 if data else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, format, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
