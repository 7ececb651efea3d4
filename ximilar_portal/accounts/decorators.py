import functools

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect


def team_view(*, write=False, manage=False):
    """Every team page goes through here: signed in, a member of the active team,
    and allowed to write (members and up) or manage (owners and admins) when the
    view changes things. Sets `request.team`."""

    def decorate(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            membership = request.membership
            if not membership:
                # Signed in but in no team (left or removed from all of them).
                return redirect("accounts:team_create")
            if (write and not membership.can_write) or (manage and not membership.can_manage):
                raise PermissionDenied("Your role in this team cannot do that.")
            request.team = membership.team
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
