"""Production settings: refuse to start without the required values, and pass
Django's deployment checks when they are given."""

import base64
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings


def manage(*args, env):
    # A production process has none of the test run's settings or switches.
    test_only = set(PRODUCTION_ENV) | {"DJANGO_ALLOW_ASYNC_UNSAFE", "VAR_DIR"}
    clean = {k: v for k, v in os.environ.items() if k not in test_only}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=clean | env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


PRODUCTION_ENV = {
    "PRODUCTION": "true",
    "SECRET_KEY": secrets.token_urlsafe(60),
    "XIMILAR_TOKEN_KEYS": "k1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
    "ALLOWED_HOSTS": "portal.example.com",
    "DATABASE_URL": "sqlite:////tmp/portal-deploy-check.sqlite3",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/9",
}


def test_it_passes_the_deployment_checks_with_production_settings(tmp_path):
    result = manage("check", "--deploy", env=PRODUCTION_ENV | {"VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "XIMILAR_TOKEN_KEYS", "DATABASE_URL"])
def test_it_refuses_to_start_in_production_without_a_required_setting(tmp_path, missing):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}
    result = manage("check", env=env | {"VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"PRODUCTION=true needs these environment variables: {missing}" in result.stderr


def test_it_refuses_a_broken_key_ring(tmp_path):
    env = PRODUCTION_ENV | {"VAR_DIR": str(tmp_path), "XIMILAR_TOKEN_KEYS": "k1:short"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "XIMILAR_TOKEN_KEYS" in result.stderr
    assert "short" not in result.stderr.split("XIMILAR_TOKEN_KEYS", 1)[1].splitlines()[0]


def test_pages_carry_a_content_security_policy(client):
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response["X-Content-Type-Options"] == "nosniff"
