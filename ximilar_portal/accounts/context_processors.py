from urllib.parse import urlsplit

from django.conf import settings


def active_team(request):
    context = {"XIMILAR_API_HOST": urlsplit(settings.XIMILAR_API_URL).netloc}
    membership = getattr(request, "membership", None)
    if membership:
        context.update(membership=membership, team=membership.team)
    return context
