import functools
from urllib.parse import urlsplit

from django.conf import settings

from .selectors import memberships_for_user


def active_team(request):
    context = {"XIMILAR_API_HOST": urlsplit(settings.XIMILAR_API_URL).netloc}
    membership = getattr(request, "membership", None)
    if membership:
        context.update(membership=membership, team=membership.team)
        # A callable: the template evaluates it only where the team menu is drawn.
        context["my_memberships"] = functools.partial(memberships_for_user, user=request.user)
    return context
