import ipaddress

from .services import current_ip


def client_ip(request) -> str | None:
    try:
        return str(ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")))
    except ValueError:
        return None


class AuditRequestMiddleware:
    """Remembers the client address for the audit events of this request.
    REMOTE_ADDR only: behind a proxy, the proxy must set it (forwarded headers
    are easy to forge)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        reset = current_ip.set(client_ip(request))
        try:
            return self.get_response(request)
        finally:
            current_ip.reset(reset)
