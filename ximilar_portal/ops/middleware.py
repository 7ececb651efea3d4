from . import views

HEALTH_PATH = "/healthz"


class HealthzMiddleware:
    """Answers /healthz before the rest of the stack: a load balancer probes a
    machine by its address over plain HTTP, which host validation
    (ALLOWED_HOSTS) and the HTTPS redirect would otherwise refuse."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info == HEALTH_PATH:
            return views.healthz(request)
        return self.get_response(request)
