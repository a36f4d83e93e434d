"""What every signed-in page shares: the actor, the organization, and service calls whose domain
errors become messages on the next page rather than error pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect

from accounts.tenancy import actor_for_request
from anomalyhub.lib.errors import ServiceError

from .timezones import viewing_as


def org_page(view):
    """Signed in and acting for an organization; a new user without one is sent to create it.
    The view receives the actor after the request; times of metric series show in the user's zone."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        actor = actor_for_request(request)
        if actor.organization_id is None:
            return redirect("frontend:org-new")
        with viewing_as(request.user):  # metric series in the viewer's zone
            return view(request, actor, *args, **kwargs)

    return wrapper


def attempt(request, action: Callable, success: str | Callable | None = None) -> bool:
    """Runs a service call; its ServiceError becomes an error message. True when it succeeded."""
    try:
        result = action()
    except ServiceError as exc:
        messages.error(request, exc.message)
        return False
    if success:
        messages.success(request, success(result) if callable(success) else success)
    return True
