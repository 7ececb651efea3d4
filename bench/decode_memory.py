"""Decode-memory benchmark (not a test): start the portal under gunicorn as the
Procfile does (2 workers × 4 threads) on a free loopback port with its own
VAR_DIR, then upload eight different copies of the largest accepted PNG
(8000 × 7999 RGBA, flat, about 250 kB each) at once, one file per request.

Prints the peak RSS of the whole web process tree (gunicorn master + workers,
summed, sampled every 20 ms), each upload's status and time, the latency of an
unrelated page fetched while the uploads run, and checks every accepted upload
got a correct thumbnail.

    .venv/bin/python bench/decode_memory.py [--uploads 8] [--workers 2] [--threads 4]

The PNGs are generated once into /tmp/bench-decode-images. Last line `name: value`.
The 200 × 12 MP JPEG figure is bench/uploads.py's.
"""

import argparse
import concurrent.futures
import io
import os
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("BENCH_VAR_DIR", "/tmp/bench-decode-var")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from uploads import (  # after the environment above
    free_port,
    generated,
    session_for,
    setup_database,
    start_web,
    wait_up,
)

IMAGES = Path("/tmp/bench-decode-images")
SIZE = (8000, 7999)  # 63,992,000 pixels: just under IMAGE_MAX_PIXELS


def make_pngs(count: int) -> list[Path]:
    """Flat RGBA PNGs, about 250 kB each, that decode to 256 MB each."""
    from PIL import Image

    return generated(
        IMAGES,
        count,
        suffix=".png",
        base=lambda: Image.new("RGBA", SIZE, (30, 120, 200, 255)),
        corner=(0, 0, 800, 600),
        colour=lambda i: (i * 37 % 256, i * 91 % 256, 40, 128),
        what=f"PNGs of {SIZE[0]} × {SIZE[1]} RGBA",
        format="PNG",
    )


def tree_rss_kb(root: int) -> int:
    """RSS of `root` and every descendant, summed."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


class Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.running = pid, 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, tree_rss_kb(self.pid))
            time.sleep(0.02)


def upload_all(base, session, batch_id, paths):
    """Like the upload page: a 503 is sent again after its Retry-After, up to 5 times."""
    url = f"{base}/records/batches/{batch_id}/files/"

    def send(path):
        started, busy = time.monotonic(), []
        for _ in range(6):
            with path.open("rb") as handle:
                response = session.post(
                    url, files={"file": (path.name, handle, "image/png")}, timeout=300
                )
            if response.status_code != 503:
                break
            busy.append(response.headers.get("Retry-After", "?"))
            time.sleep(int(response.headers.get("Retry-After", 5)))
        return response, time.monotonic() - started, busy

    with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
        futures = [pool.submit(send, path) for path in paths]
        time.sleep(0.5)  # the uploads are in the web workers by now
        started = time.monotonic()
        session.get(f"{base}/records/", timeout=300)
        unrelated = time.monotonic() - started
        return [f.result() for f in futures], unrelated


def check_thumbnail(session, base, answer) -> str:
    from PIL import Image

    if "thumbnail_url" not in answer:
        return "no thumbnail"
    data = session.get(base + answer["thumbnail_url"], timeout=60).content
    image = Image.open(io.BytesIO(data))
    image.load()
    expected = (320, 320)  # 8000 × 7999 fits 320 × 320 as 320 × 320 (rounded)
    if image.format != "WEBP" or image.size != expected:
        return f"bad thumbnail {image.format} {image.size}"
    colour = image.convert("RGB").getpixel((300, 300))
    if max(abs(a - b) for a, b in zip(colour, (30, 120, 200), strict=True)) > 12:
        return f"bad colour {colour}"
    return "ok"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    paths = make_pngs(args.uploads)
    sessionid, batch_id = setup_database()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = start_web(port, workers=args.workers, threads=args.threads, timeout=300)
    try:
        wait_up(base + "/accounts/login/")
        session = session_for(base, sessionid)
        session.get(base + "/records/", timeout=60)  # every worker warm enough
        at_start = tree_rss_kb(web.pid)
        print(f"web tree RSS at start {at_start / 1024:.0f} MB ({args.workers} × {args.threads})")
        sampler = Sampler(web.pid)
        sampler.start()
        started = time.monotonic()
        results, unrelated = upload_all(base, session, batch_id, paths)
        elapsed = time.monotonic() - started
        sampler.running = False
        sampler.join()
        for (response, seconds, busy), path in zip(results, paths, strict=True):
            answer = response.json() if "json" in response.headers.get("Content-Type", "") else {}
            verdict = check_thumbnail(session, base, answer) if response.status_code == 201 else ""
            print(
                f"{path.name}: HTTP {response.status_code} in {seconds:.1f} s"
                + (f" after {len(busy)} × 503 (Retry-After {', '.join(busy)})" if busy else "")
                + (f", thumbnail {verdict}" if verdict else f" {answer.get('message', '')}")
            )
        print(f"{len(paths)} uploads of {paths[0].stat().st_size / 1e3:.0f} kB in {elapsed:.1f} s")
        print(f"unrelated page (/records/) during the uploads: {unrelated:.2f} s")
        print(f"web tree RSS after the uploads: {tree_rss_kb(web.pid) / 1024:.0f} MB")
        print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
        print(f"decode_memory_peak_web_rss_mb: {sampler.peak / 1024:.0f}")
    finally:
        web.terminate()
        web.wait(timeout=30)


if __name__ == "__main__":
    main()
