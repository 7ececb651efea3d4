"""Does the sandbox speak Ximilar's protocol well enough for the official client?

Runs `ximilar-client==1.39.0` (with OpenCV and numpy, which it needs for
`_file` and `_base64` records) from its own venv under var/compat-venv, made on
the first run and reused after, against the sandbox started as a separate
process on a free loopback port. Prints one PASS/FAIL line per check and ends
with `compat: N/N passed`; exits non-zero when any check fails.

    .venv/bin/python bench/compat_official_client.py

The same file is the inner script: the compat venv's python runs it with
`--inner`, so this file imports only the standard library at the top.

How the client is pointed at the sandbox: every client class takes
`endpoint=` (similarity clients want the service's base, e.g.
`<url>similarity/photos/v2/`). On construction the client also POSTs to
`authorization/v2/authorize`, but on the fixed `ximilar.client.client.ENDPOINT`
(https://api.ximilar.com/) unless the endpoint contains "localhost"; the inner
script points that constant at the sandbox so the check runs against it.
"""

import json
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "var" / "compat-venv"
PACKAGES = ["ximilar-client==1.39.0", "opencv-python-headless", "numpy"]


# --- Outer: venv, sandbox process, tally --------------------------------------


def compat_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {VENV.relative_to(ROOT)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = [str(python), "-c", "import ximilar.client, cv2, numpy"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        print(f"installing {' '.join(PACKAGES)}", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *PACKAGES], check=True)
    return python


def start_sandbox(token: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ximilar_portal.sandbox", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT,
        env={**os.environ, "XIMILAR_SANDBOX_TOKENS": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = process.stdout.readline().strip()
    if not line.startswith("sandbox listening on "):
        process.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return process, line.removeprefix("sandbox listening on ")


def run_inner(python: Path, url: str, token: str) -> list[str]:
    env = {**os.environ, "SANDBOX_URL": url, "SANDBOX_TOKEN": token}
    with tempfile.TemporaryDirectory() as workdir:
        # A neutral cwd: the client's wheel ships a top-level `tests` package.
        result = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--inner"],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    lines = result.stdout.splitlines()
    if result.returncode != 0:
        lines.append(f"FAIL inner script exited {result.returncode}: {result.stderr[-2000:]}")
    return lines


def main() -> int:
    python = compat_python()
    token = "compat-" + secrets.token_hex(12)
    process, url = start_sandbox(token)
    try:
        lines = run_inner(python, url, token)
    finally:
        process.terminate()
        sandbox_output = process.communicate(timeout=10)[0]
    ok = token not in sandbox_output
    lines.append(("PASS" if ok else "FAIL") + " the sandbox never printed the token")
    for line in lines:
        print(line)
    checks = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    passed = sum(1 for line in checks if line.startswith("PASS"))
    print(f"compat: {passed}/{len(checks)} passed")
    return 0 if checks and passed == len(checks) else 1


# --- Inner: the official client against the sandbox ---------------------------


class Checks:
    def __init__(self):
        self.failed = 0

    def run(self, name, check):
        try:
            check()
        except Exception as error:  # any failure of the client or the answer is a FAIL
            self.failed += 1
            print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
        else:
            print(f"PASS {name}", flush=True)


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def inner() -> int:
    import base64

    import cv2
    import numpy
    import ximilar.client.client as client_module
    from ximilar.client import (
        DominantColorProductClient,
        FashionTaggingClient,
        GenericTaggingClient,
        RecognitionClient,
    )
    from ximilar.client.search import SimilarityPhotosClient

    url, token = os.environ["SANDBOX_URL"], os.environ["SANDBOX_TOKEN"]
    client_module.ENDPOINT = url  # where the construction-time authorize call goes

    def bgr(rgb):
        return tuple(reversed(rgb))

    def half_red_half_blue():
        image = numpy.zeros((60, 120, 3), numpy.uint8)
        image[:, :60] = bgr((255, 0, 0))
        image[:, 60:] = bgr((0, 0, 255))
        return image

    def blocks(seed):
        """A made-up photo: random coloured blocks, scaled up."""
        small = numpy.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=numpy.uint8)
        return cv2.resize(small, (320, 240), interpolation=cv2.INTER_NEAREST)

    def as_base64(image, ext=".png", params=()):
        ok, data = cv2.imencode(ext, image, list(params))
        return base64.b64encode(data.tobytes()).decode()

    workdir = tempfile.mkdtemp()

    def as_file(image, name):
        path = os.path.join(workdir, name)
        cv2.imwrite(path, image)
        return path

    def sandbox_log():
        with urllib.request.urlopen(url + "_sandbox/log", timeout=10) as response:
            return json.load(response)

    checks = Checks()

    def authorize():
        GenericTaggingClient(token, endpoint=url)
        paths = [entry["path"] for entry in sandbox_log()]
        expect("/authorization/v2/authorize" in paths, f"no authorize call in {paths}")

    def generic_tags():
        tagging = GenericTaggingClient(token, endpoint=url)
        records = [
            {"_id": "b64", "_base64": as_base64(half_red_half_blue())},
            {"_id": "file", "_file": as_file(half_red_half_blue(), "tags.png")},
        ]
        result = tagging.tags(records)
        expect(result["status"]["code"] == 200, result["status"])
        for record in result["records"]:
            names = [tag["name"] for tag in record["_tags"]]
            expect({"red", "blue"} <= set(names), f"{record['_id']}: {names}")

    def dominant_colours():
        colours = DominantColorProductClient(token, endpoint=url)
        result = colours.dominantcolor([{"_file": as_file(half_red_half_blue(), "colours.png")}])
        found = result["records"][0]["_dominant_colors"]
        expect(sorted(found["color_names"]) == ["blue", "red"], found)
        expect(all(abs(p - 0.5) < 0.02 for p in found["percentages"]), found["percentages"])

    def recognition():
        client = RecognitionClient(token, endpoint=url)
        task, status = client.get_task("compat-task")
        expect(task is not None, status)
        result = task.classify(
            [{"_base64": as_base64(blocks(1))}, {"_file": as_file(blocks(2), "c.png")}]
        )
        labels = [record["best_label"]["name"] for record in result["records"]]
        expect(len(labels) == 2 and all(labels), result)

    def similarity():
        search = SimilarityPhotosClient(
            token, collection_id="compat", endpoint=url + "similarity/photos/v2/"
        )
        records = [
            {"_id": "one", "_file": as_file(blocks(1), "one.png"), "kind": "a"},
            {"_id": "two", "_base64": as_base64(blocks(2)), "kind": "b"},
            {"_id": "three", "_base64": as_base64(blocks(3)), "kind": "a"},
        ]
        inserted = search.insert(records)
        expect(inserted["status"]["code"] == 210, inserted["status"])
        near_copy = cv2.resize(blocks(2), (200, 150), interpolation=cv2.INTER_AREA)
        query = {"_base64": as_base64(near_copy, ".jpg", (cv2.IMWRITE_JPEG_QUALITY, 70))}
        found = search.search(query, k=3)
        expect(found["answer_records"][0]["_id"] == "two", found)
        filtered = search.search(query, k=3, filter={"kind": "a"})
        expect({r["_id"] for r in filtered["answer_records"]} == {"one", "three"}, filtered)
        expect(sorted(r["_id"] for r in search.all_records_iter()) == ["one", "three", "two"], "")
        expect(search.remove([{"_id": "one"}])["status"]["code"] == 220, "delete")

    def fashion_categories():
        fashion = FashionTaggingClient(token, endpoint=url)
        expect("Clothing" in fashion.get_top_categories(), "no Clothing top category")

    checks.run("authorize call on client construction", authorize)
    checks.run("GenericTaggingClient.tags with _base64 and _file", generic_tags)
    checks.run("DominantColorProductClient.dominantcolor", dominant_colours)
    checks.run("RecognitionClient.get_task + Task.classify", recognition)
    checks.run("SimilarityPhotosClient insert, search, filter, allRecords, remove", similarity)
    checks.run("FashionTaggingClient.get_top_categories (no token)", fashion_categories)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(inner() if "--inner" in sys.argv else main())
