from django.contrib import messages
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

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
    context = {"form": form, "credential": credential}
    return render(request, "accounts/token.html", context)
