"""A request that meets a temporary shortage (no image decode slot free in
time) gets 503 with Retry-After, never a 500: nothing is wrong with what was
sent, and nothing of it was stored."""

import logging

from django.http import JsonResponse
from django.template.response import TemplateResponse

from ximilar_portal.lib.images import ImageBusy

log = logging.getLogger(__name__)


class BusyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, ImageBusy):
            return None
        log.warning("busy.image_decode path=%s retry_after=%s", request.path, exception.retry_after)
        if "application/json" in request.headers.get("Accept", ""):
            response = JsonResponse({"status": "busy", "message": exception.message}, status=503)
        else:
            context = {"message": exception.message}
            response = TemplateResponse(request, "503.html", context, status=503).render()
        response["Retry-After"] = str(exception.retry_after)
        return response
