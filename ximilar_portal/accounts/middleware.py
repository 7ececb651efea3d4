from django.utils.functional import SimpleLazyObject

from .selectors import active_membership


class ActiveTeamMiddleware:
    """Puts `request.membership` (and `request.team`) on every signed-in request,
    looked up lazily so static files and anonymous pages cost no query."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        def membership():
            if not request.user.is_authenticated:
                return None
            return active_membership(user=request.user, session=request.session)

        request.membership = SimpleLazyObject(membership)
        return self.get_response(request)
