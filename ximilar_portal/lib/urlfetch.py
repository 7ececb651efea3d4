"""Fetch a URL the user gave us without letting it reach inside our network.

Every hop (the first request and each redirect) resolves the host, refuses it
unless every address is global, connects to one of those checked addresses (so
a second DNS answer cannot swap in another one), and checks the address the
socket is actually connected to. Size and time are capped. Only http and https.

No Django here: callers pass the limits.
"""

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
# Addresses Python calls global but nobody should fetch from on our behalf.
EXTRA_BLOCKED = [
    ipaddress.ip_network("100.64.0.0/10"),  # carrier-grade NAT (shared address space)
    ipaddress.ip_network("192.0.0.0/24"),  # IETF protocol assignments
    ipaddress.ip_network("64:ff9b::/96"),  # NAT64: embeds any IPv4 address
    ipaddress.ip_network("64:ff9b:1::/48"),
    ipaddress.ip_network("2002::/16"),  # 6to4: embeds any IPv4 address
]


class FetchRefused(Exception):
    """The URL cannot be fetched; `str(error)` says why, for the user."""


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes


def resolve(host: str, port: int) -> list[str]:
    """Every address the host resolves to. Tests replace this function."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise FetchRefused(f"The host {host!r} could not be resolved.") from error
    return [info[4][0] for info in infos]


def address_allowed(address: str) -> bool:
    """Only global unicast addresses; IPv4-mapped and -compatible IPv6 forms are
    judged by the IPv4 address inside them."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or _ipv4_compatible(ip)
        if embedded is not None:
            return address_allowed(str(embedded))
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified:
        return False
    return not any(ip in network for network in EXTRA_BLOCKED if network.version == ip.version)


def _ipv4_compatible(ip: ipaddress.IPv6Address):
    """::a.b.c.d (deprecated, still routed by some stacks)."""
    if int(ip) >> 32 == 0:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def fetch(url: str, *, max_bytes: int, timeout: float) -> Fetched:
    """GET `url`, following up to MAX_REDIRECTS redirects, each one checked.
    Raises FetchRefused with a sentence for the user."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        response, connection = _request(url, deadline)
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("Location")
                if not location:
                    raise FetchRefused("The server answered with a redirect to nowhere.")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchRefused(f"The server answered HTTP {response.status}.")
            body = _read_capped(response, max_bytes, deadline)
            return Fetched(url, response.getheader("Content-Type", ""), body)
        finally:
            connection.close()
    raise FetchRefused(f"More than {MAX_REDIRECTS} redirects.")


def _request(url: str, deadline: float):
    scheme, host, port, target = _split(url)
    addresses = resolve(host, port)
    refused = [address for address in addresses if not address_allowed(address)]
    if not addresses or refused:
        raise FetchRefused(f"The address of {host!r} is not a public internet address.")
    connection_class = _PinnedHTTPS if scheme == "https" else _PinnedHTTP
    connection = connection_class(host, port, addresses=addresses, deadline=deadline)
    try:
        connection.request("GET", target, headers=_headers(host, port, scheme))
        return connection.getresponse(), connection
    except FetchRefused:
        connection.close()
        raise
    except (OSError, http.client.HTTPException) as error:
        connection.close()
        raise FetchRefused(f"The image could not be downloaded ({_describe(error)}).") from None


def _split(url: str):
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise FetchRefused("The URL is not valid.") from None
    if parts.scheme not in ("http", "https"):
        raise FetchRefused("Only http and https URLs can be fetched.")
    if not parts.hostname:
        raise FetchRefused("The URL has no host.")
    if parts.username or parts.password:
        raise FetchRefused("URLs with a user name or password are not fetched.")
    port = port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, target


def _headers(host, port, scheme):
    default = 443 if scheme == "https" else 80
    return {
        "Host": host if port == default else f"{host}:{port}",
        "User-Agent": "ximilar-portal-thumbnailer",
        "Accept": "image/*",
        "Accept-Encoding": "identity",
    }


def _read_capped(response, max_bytes: int, deadline: float) -> bytes:
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > max_bytes:
        raise FetchRefused(f"The image is larger than {max_bytes // (1024 * 1024)} MB.")
    chunks, size = [], 0
    while chunk := response.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(f"The image is larger than {max_bytes // (1024 * 1024)} MB.")
        if time.monotonic() > deadline:
            raise FetchRefused("The download took too long.")
        chunks.append(chunk)
    return b"".join(chunks)


def _describe(error) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    return type(error).__name__


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects only to the addresses checked above, and checks the peer."""

    def __init__(self, host, port, *, addresses, deadline):
        super().__init__(host, port, timeout=max(0.1, deadline - time.monotonic()))
        self.addresses = addresses
        self.deadline = deadline

    def connect(self):
        self.sock = _connect_checked(self.addresses, self.port, self.deadline)


class _PinnedHTTPS(_PinnedHTTP):
    default_port = 443

    def connect(self):
        sock = _connect_checked(self.addresses, self.port, self.deadline)
        context = ssl.create_default_context()
        self.sock = context.wrap_socket(sock, server_hostname=self.host)


def _connect_checked(addresses, port, deadline) -> socket.socket:
    last_error = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            sock = socket.create_connection((address, port), timeout=remaining)
        except OSError as error:
            last_error = error
            continue
        peer = sock.getpeername()[0]
        if not address_allowed(peer):
            sock.close()
            raise FetchRefused("The connection went to an address that is not public.")
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        return sock
    raise last_error or TimeoutError("timed out")
