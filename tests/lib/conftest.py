import secrets

import pytest

from tests.lib.fake_ximilar import FakeXimilar
from ximilar_portal.lib.ximilar import Client

# The token every client here uses. It must never show up in an exception,
# a log line or a repr; tests search for it.
CANARY = "canary-" + secrets.token_hex(8)


@pytest.fixture
def fake():
    server = FakeXimilar().start()
    yield server
    server.stop()


@pytest.fixture
def make_client(fake):
    """Clients pointed at the fake server (by default), all closed afterwards."""
    clients = []

    def make(**options):
        options = {"token": CANARY, "base_url": fake.url, "read_timeout": 5, **options}
        client = Client(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client):
    return make_client()
