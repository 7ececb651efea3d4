from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from ximilar_portal.lib.forms import bound_data

from . import services
from .decorators import team_view
from .forms import SignupForm, TokenForm
from .models import Credential


@require_http_methods(["GET", "POST"])
def signup(request):
    form = SignupForm(*bound_data(request))
    if request.method == "POST" and form.is_valid():
        user = services.user_signup(
            email=form.cleaned_data["email"], password=form.cleaned_data["password1"]
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome! Save your team's Ximilar token to start.")
        return redirect("accounts:token")
    return render(request, "accounts/signup.html", {"form": form})


@sensitive_post_parameters("token")
@team_view()
@require_http_methods(["GET", "POST"])
def token(request):
    credential = Credential.objects.filter(team=request.team).first()
    form = TokenForm(*bound_data(request))
    if request.method == "POST":
        if not request.membership.can_manage:
            raise PermissionDenied("Only owners and admins can change the token.")
        if form.is_valid():
            services.credential_set(
                team=request.team,
                token=form.cleaned_data["token"],
                workspace=form.cleaned_data["workspace"],
                user=request.user,
            )
            messages.success(request, "Token saved. It is stored encrypted.")
            return redirect("accounts:token")
    return _token_page(request, form, credential, status=400 if form.errors else 200)


def _token_page(request, form, credential, *, status=200, test=None):
    context = {
        "form": form,
        "credential": credential,
        "test": test,
        "undecryptable": credential is not None
        and not services.credential_is_readable(credential=credential),
        "undecryptable_message": services.UNDECRYPTABLE_MESSAGE,
    }
    return render(request, "accounts/token.html", context, status=status)


@team_view(manage=True)
@require_POST
def token_remove(request):
    if services.credential_remove(team=request.team, user=request.user):
        messages.success(
            request, "Token removed. Nothing is sent to Ximilar until a new one is saved."
        )
    return redirect("accounts:token")


@team_view(manage=True)
@require_POST
def token_test(request):
    """Shows the outcome on the page itself (no redirect): the credits are
    what the person came for."""
    outcome = services.credential_test(team=request.team, user=request.user)
    request.team.refresh_from_db(fields=["blocked_reason"])
    credential = Credential.objects.filter(team=request.team).first()
    return _token_page(request, TokenForm(), credential, test=outcome)


class PasswordResetView(auth_views.PasswordResetView):
    """Django's, with links that start with SITE_URL, never with the Host
    header of the request (which a client chooses)."""

    def form_valid(self, form):
        self.extra_email_context = {"site_url": settings.SITE_URL.rstrip("/")}
        return super().form_valid(form)
