"""Uploads benchmark (not a test): start the portal under gunicorn (and a Celery
worker for the import) on a free loopback port with its own VAR_DIR, then

1. upload 200 noisy 12-megapixel JPEGs through the web endpoint, 4 at a time,
   one file per request: images per second and the web worker's peak RSS;
2. send a 30,000 × 30,000 PNG bomb: time to refuse it and the RSS growth;
3. import a 10,000-row CSV through the web: check, confirm, created.

    .venv/bin/python bench/uploads.py [--images 200] [--rows 10000]

The JPEGs are generated once into /tmp/bench-uploads-images. Last line `name: value`.
"""

import argparse
import base64
import concurrent.futures
import io
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR_DIR = Path(os.environ.get("BENCH_VAR_DIR", "/tmp/bench-uploads-var"))
IMAGES = Path("/tmp/bench-uploads-images")
ENV = {
    "VAR_DIR": str(VAR_DIR),
    "SECRET_KEY": secrets.token_urlsafe(40),
    "XIMILAR_TOKEN_KEYS": "b1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "DJANGO_SETTINGS_MODULE": "ximilar_portal.settings",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "CELERY_BROKER_URL": "filesystem://",
    "LOG_LEVEL": "WARNING",
}
for name in ("DATABASE_URL", "CELERY_BROKER_FOLDER", "MEDIA_ROOT"):
    os.environ.pop(name, None)
os.environ.update(ENV)
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def generated(
    folder: Path, count: int, *, suffix: str, base, corner, colour, what: str, **save
) -> list[Path]:
    """`count` copies of `base()` saved into `folder` once, each with a corner
    painted its own `colour(i)` so that no two are duplicates."""
    folder.mkdir(exist_ok=True)
    paths = [folder / f"{i:03d}{suffix}" for i in range(count)]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"generating {len(missing)} {what} once…", flush=True)
        original = base()
        for path in missing:
            image = original.copy()
            image.paste(colour(int(path.stem)), corner)
            image.save(path, **save)
            del image  # the next copy may be hundreds of MB
    return paths


def make_images(count: int) -> list[Path]:
    """Noisy 4000 × 3000 JPEGs (realistic sizes, 5–9 MB), each one different."""
    from PIL import Image

    return generated(
        IMAGES,
        count,
        suffix=".jpg",
        base=lambda: Image.effect_noise((4000, 3000), 60).convert("RGB"),
        corner=(0, 0, 400, 300),
        colour=lambda i: (i * 37 % 256, i * 91 % 256, i * 13 % 256),
        what="12-megapixel JPEGs",
        format="JPEG",
        quality=90,
    )


def png_bomb(width=30000, height=30000) -> bytes:
    def chunk(kind, data):
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (width * 3)
    idat = b"".join(compressor.compress(row) for _ in range(200)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kb(pid: int, field="VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def setup_database():
    shutil.rmtree(VAR_DIR, ignore_errors=True)
    VAR_DIR.mkdir(parents=True)
    subprocess.run([PYTHON, "manage.py", "migrate", "-v0"], cwd=ROOT, check=True)
    import django

    django.setup()
    from django.test import Client

    from ximilar_portal.accounts.services import user_signup
    from ximilar_portal.records.models import UploadBatch

    user = user_signup(email="bench@example.com", password=secrets.token_urlsafe(24))
    team = user.memberships.get().team
    batch = UploadBatch.objects.create(team=team, created_by=user, kind="files")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, batch.pk


def start(command, log_name):
    log = open(VAR_DIR / log_name, "w")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def start_web(port: int, *, workers: int, threads: int, timeout: int):
    command = [PYTHON, "-m", "gunicorn", "ximilar_portal.wsgi", "--bind", f"127.0.0.1:{port}"]
    options = ["--workers", str(workers), "--threads", str(threads), "--timeout", str(timeout)]
    return start(command + options, "web.log")


def web_worker_pid(master: subprocess.Popen) -> int:
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    return int(children[0]) if children else master.pid


def wait_up(url, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=10)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError("the portal did not start")


def session_for(base, sessionid):
    session = requests.Session()
    session.cookies.set("sessionid", sessionid)
    session.get(base + "/records/upload/", timeout=10)  # sets csrftoken
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    session.headers["Referer"] = base + "/"
    return session


def bench_images(base, session, batch_id, paths, pid):
    url = f"{base}/records/batches/{batch_id}/files/"

    def send(path):
        with path.open("rb") as handle:
            response = session.post(
                url, files={"file": (path.name, handle, "image/jpeg")}, timeout=120
            )
        return response.status_code

    peak = [rss_kb(pid)]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(send, path) for path in paths]
        while not all(f.done() for f in futures):
            peak.append(rss_kb(pid))
            time.sleep(0.05)
    elapsed = time.monotonic() - started
    codes = [f.result() for f in futures]
    return elapsed, codes, max(max(peak), rss_kb(pid, "VmHWM"))


def bench_bomb(base, session, batch_id, pid):
    bomb = png_bomb()
    before = rss_kb(pid)
    started = time.monotonic()
    response = session.post(
        f"{base}/records/batches/{batch_id}/files/",
        files={"file": ("bomb.png", io.BytesIO(bomb), "image/png")},
        timeout=60,
    )
    elapsed = time.monotonic() - started
    growth = max(0, rss_kb(pid) - before)
    return elapsed, growth, len(bomb), response.status_code, response.json()["message"]


def bench_import(base, session, rows):
    lines = ["_id,_url,product_id,category,price,tags,color"]
    lines += [
        f"r{i},https://example.com/img/{i}.jpg,sku-{i},cat{i % 9},{i % 500}.5,a|b,red"
        for i in range(rows)
    ]
    data = "\n".join(lines).encode()
    started = time.monotonic()
    response = session.post(
        base + "/records/import/", files={"file": ("rows.csv", data, "text/csv")}, timeout=120
    )
    batch_url = response.url
    wait_state(session, batch_url, "Ready to import")
    checked = time.monotonic() - started
    batch_id = batch_url.rstrip("/").rsplit("/", 1)[1]
    session.post(f"{base}/records/batches/{batch_id}/import/", timeout=300)
    wait_state(session, batch_url, ">Done<")
    return checked, time.monotonic() - started, len(data)


def wait_state(session, url, marker, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker in session.get(url, timeout=30).text:
            return
        time.sleep(0.2)
    raise RuntimeError(f"import did not reach {marker}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    paths = make_images(args.images)
    sessionid, batch_id = setup_database()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = start_web(port, workers=1, threads=4, timeout=120)
    worker = start(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "ximilar_portal",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            "2",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        "worker.log",
    )
    try:
        wait_up(base + "/accounts/login/")
        pid = web_worker_pid(web)
        session = session_for(base, sessionid)
        print(f"web worker pid {pid}, RSS at start {rss_kb(pid) / 1024:.0f} MB")
        size = sum(p.stat().st_size for p in paths) / len(paths) / 1e6
        elapsed, codes, peak = bench_images(base, session, batch_id, paths, pid)
        print(
            f"images: {len(paths)} × 12 MP JPEG (avg {size:.1f} MB) in {elapsed:.1f} s "
            f"= {len(paths) / elapsed:.2f} images/s; accepted {codes.count(201)}/{len(codes)}"
        )
        print(f"web worker peak RSS during uploads: {peak / 1024:.0f} MB")
        bomb_s, growth, bomb_size, status, message = bench_bomb(base, session, batch_id, pid)
        print(
            f"PNG bomb 30000×30000 ({bomb_size / 1e3:.0f} kB): HTTP {status} "
            f"in {bomb_s * 1000:.0f} ms, "
            f"RSS growth {growth / 1024:.1f} MB — {message}"
        )
        checked, total, csv_size = bench_import(base, session, args.rows)
        print(
            f"import: {args.rows} rows ({csv_size / 1e6:.2f} MB CSV) checked in {checked:.1f} s, "
            f"created in {total:.1f} s total"
        )
        print(f"uploads_images_per_second: {len(paths) / elapsed:.2f}")
    finally:
        for process in (web, worker):
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
