from django.core.paginator import Paginator
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from ximilar_portal.accounts.decorators import team_view

from . import selectors
from .forms import AuditFilterForm

PAGE_SIZE = 50


@team_view(manage=True)
@require_http_methods(["GET"])
def audit_log(request):
    team = request.team
    form = AuditFilterForm(
        request.GET,
        actions=selectors.audit_actions_for_team(team=team),
        actors=selectors.audit_actors_for_team(team=team),
    )
    filters = form.cleaned_data if form.is_valid() else {}
    events = selectors.audit_events_for_team(
        team=team, action=filters.get("action") or "", actor_id=filters.get("actor")
    )
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render(request, "audit/list.html", context)
