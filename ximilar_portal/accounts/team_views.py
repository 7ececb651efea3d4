"""Team pages: members, invitations, roles, switching and leaving."""

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from ximilar_portal.lib.forms import bound_data

from . import membership_services as teams
from . import selectors
from .decorators import team_view
from .forms import InvitedSignupForm, InviteForm, RoleForm, TeamForm, grantable_roles
from .membership_services import TeamRuleError
from .services import team_create as team_create_service

ACTIVE_TEAM_KEY = "team_id"


@team_view()
@require_http_methods(["GET"])
def team(request):
    return render(request, "accounts/team.html", _team_context(request))


def _team_context(request, invite_form=None):
    membership = request.membership
    context = {
        "members": selectors.members_of_team(team=request.team),
        "grantable_roles": grantable_roles(membership.role),
    }
    if membership.can_manage:
        context["invitations"] = selectors.pending_invitations(team=request.team)
        context["invite_form"] = invite_form or InviteForm(actor_role=membership.role)
    return context


@login_required
@require_http_methods(["GET", "POST"])
def team_create(request):
    form = TeamForm(*bound_data(request))
    if request.method == "POST" and form.is_valid():
        new_team = team_create_service(user=request.user, name=form.cleaned_data["name"])
        request.session[ACTIVE_TEAM_KEY] = new_team.pk
        messages.success(
            request, f"Team “{new_team.name}” created. Save its Ximilar token to start."
        )
        return redirect("accounts:token")
    return render(request, "accounts/team_create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def team_switch(request, pk):
    membership = selectors.membership_get(user=request.user, team_id=pk)  # 404 for others
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    request.session[ACTIVE_TEAM_KEY] = membership.team_id
    messages.success(request, f"Now working in “{membership.team.name}”.")
    return redirect("records:list")


@team_view(manage=True)
@require_POST
def invite(request):
    form = InviteForm(request.POST, actor_role=request.membership.role)
    if form.is_valid():
        try:
            invitation = teams.invitation_create(
                team=request.team, actor=request.membership, **form.cleaned_data
            )
        except TeamRuleError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("accounts:team")
    return render(request, "accounts/team.html", _team_context(request, form), status=400)


@team_view(manage=True)
def invitation_revoke(request, pk):
    invitation = get_object_or_404(request.team.invitations.filter(accepted_at__isnull=True), pk=pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    teams.invitation_revoke(invitation=invitation, actor=request.membership)
    messages.success(request, f"Invitation to {invitation.email} withdrawn.")
    return redirect("accounts:team")


@team_view(manage=True)
def member_role(request, pk):
    membership = _team_membership(request, pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles.")
        return redirect("accounts:team")
    return _apply_rule(
        request,
        lambda: teams.membership_role_change(
            membership=membership, actor=request.membership, role=form.cleaned_data["role"]
        ),
        f"{membership.user.email} is now {form.cleaned_data['role']}.",
    )


@team_view(manage=True)
def member_remove(request, pk):
    membership = _team_membership(request, pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    return _apply_rule(
        request,
        lambda: teams.membership_remove(membership=membership, actor=request.membership),
        f"{membership.user.email} was removed from the team.",
    )


@team_view()
@require_POST
def team_leave(request):
    name = request.team.name
    try:
        teams.membership_leave(membership=request.membership)
    except TeamRuleError as error:
        messages.error(request, str(error))
        return redirect("accounts:team")
    request.session.pop(ACTIVE_TEAM_KEY, None)
    messages.success(request, f"You left “{name}”.")
    return redirect("records:list")


def _team_membership(request, pk):
    """The one lookup of a member: another team's membership is a 404, before
    anything else (even the method) is looked at."""
    return get_object_or_404(request.team.memberships.select_related("user", "team"), pk=pk)


def _apply_rule(request, action, success_message):
    try:
        action()
    except TeamRuleError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, success_message)
    return redirect("accounts:team")


@require_http_methods(["GET", "POST"])
def invitation(request, token):
    """The link from the e-mail. Signed in: accept. Not signed in: make an
    account right here (it joins the team), or log in and come back."""
    pending = teams.invitation_for_token(token)
    if pending is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    if request.user.is_authenticated:
        return _invitation_for_user(request, token, pending)
    return _invitation_for_newcomer(request, token, pending)


def _invitation_for_user(request, token, pending):
    error = None
    if request.method == "POST":
        try:
            membership = teams.invitation_accept(raw_token=token, user=request.user)
        except TeamRuleError as rule:
            error = str(rule)
        else:
            request.session[ACTIVE_TEAM_KEY] = membership.team_id
            messages.success(request, f"You joined “{membership.team.name}” as {membership.role}.")
            return redirect("records:list")
    context = {"invitation": pending, "error": error}
    return render(request, "accounts/invitation.html", context, status=400 if error else 200)


def _invitation_for_newcomer(request, token, pending):
    from .models import User

    form = InvitedSignupForm(*bound_data(request), email=pending.email)
    has_account = User.objects.filter(email__iexact=pending.email).exists()
    if request.method == "POST" and not has_account and form.is_valid():
        try:
            user = teams.user_signup_invited(
                raw_token=token, password=form.cleaned_data["password1"]
            )
        except TeamRuleError as error:
            form.add_error(None, str(error))
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session[ACTIVE_TEAM_KEY] = pending.team_id
            messages.success(request, f"Welcome! You joined “{pending.team.name}”.")
            return redirect("records:list")
    context = {"invitation": pending, "form": form, "has_account": has_account}
    return render(request, "accounts/invitation.html", context)
