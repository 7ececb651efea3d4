"""Loaded by pytest (`-p tests.environment`) before Django reads its settings, so
the test run gets its own var/ folder, broker folder and secrets, and never
touches the ones of a portal started with `make run` on the same clone.

Worker processes started by the tests inherit this environment."""

import base64
import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

os.environ.setdefault("VAR_DIR", str(ROOT / "var" / "test"))
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
# Two keys: test1 encrypts; test2 is the key tests/test_rotation.py rotates to
# while the session's worker (which inherits this ring) keeps sending.
os.environ.setdefault(
    "XIMILAR_TOKEN_KEYS",
    ",".join(
        f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}" for kid in ("test1", "test2")
    ),
)
# Playwright's sync API runs an event loop in the test thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
