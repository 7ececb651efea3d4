"""`python -m ximilar_portal.sandbox` as a separate process, as `make run` starts it."""

import base64
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-secret-token-abcdef"


@pytest.fixture
def start_cli():
    processes = []

    def start(*args, env=None):
        process = subprocess.Popen(
            [sys.executable, "-m", "ximilar_portal.sandbox", "--port", "0", *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        line = process.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:"), line
        return process, line.removeprefix("sandbox listening on ")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
        process.stderr.close()


def details(url, token):
    return requests.get(
        url + "account/v2/details/", headers={"Authorization": f"Token {token}"}, timeout=5
    )


def test_the_cli_prints_its_url_and_serves(start_cli):
    process, url = start_cli("--tokens", f"{SECRET},other-token")
    assert url.endswith("/")
    assert details(url, SECRET).status_code == 200
    assert details(url, "other-token").status_code == 200
    assert details(url, "wrong").status_code == 401
    process.terminate()
    out, err = process.communicate(timeout=10)
    assert SECRET not in out + err


def test_the_cli_takes_tokens_from_the_environment(start_cli):
    _, url = start_cli(env={"XIMILAR_SANDBOX_TOKENS": SECRET})
    assert details(url, SECRET).status_code == 200
    assert details(url, "sandbox-demo-token").status_code == 401


def test_the_cli_defaults_to_the_demo_token(start_cli):
    _, url = start_cli(env={"XIMILAR_SANDBOX_TOKENS": ""})
    assert details(url, "sandbox-demo-token").status_code == 200


def test_the_cli_sets_faults_and_capacity(start_cli):
    _, url = start_cli(
        "--tokens", SECRET, "--error-rate", "1", "--latency-ms", "5", "--capacity", "3"
    )
    assert details(url, SECRET).status_code == 500
    faults = requests.get(url + "_sandbox/faults", timeout=5).json()
    assert faults["error_rate"] == 1.0 and faults["latency_ms"] == 5

    requests.post(url + "_sandbox/faults", json={"error_rate": 0}, timeout=5)
    image = base64.b64encode(encoded_png()).decode()
    records = [{"_id": str(n), "_base64": image} for n in range(4)]
    headers = {"Authorization": f"Token {SECRET}", "collection-id": "c"}
    body = requests.post(
        url + "similarity/photos/v2/insert", json={"records": records}, headers=headers, timeout=5
    ).json()
    assert body["status"]["code"] == 211
    assert [r["_reason"]["status"]["code"] for r in body["skipped_records"]] == [412]


def encoded_png():
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 128, 0)).save(out, "PNG")
    return out.getvalue()


def test_the_cli_sets_a_rate_limit(start_cli):
    _, url = start_cli("--tokens", SECRET, "--rate-limit", "1")
    assert [details(url, SECRET).status_code for _ in range(2)] == [200, 429]


def test_the_sandbox_code_never_imports_django():
    sources = (ROOT / "ximilar_portal" / "sandbox").glob("*.py")
    for source in sources:
        for line in source.read_text().splitlines():
            words = line.split()
            assert words[:2] not in (["import", "django"], ["from", "django"]), source.name
            assert not line.lstrip().startswith(("import django.", "from django.")), source.name
