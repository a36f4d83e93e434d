from accounts.tenancy import actor_for_request


def organization(request):
    """The organization the signed-in user acts for, and their others, for every page."""
    user = getattr(request, "user", None)
    if not (user and user.is_authenticated):
        return {}
    actor = actor_for_request(request)
    memberships = list(user.memberships.select_related("organization").order_by("created_at"))
    current = next((m for m in memberships if m.organization_id == actor.organization_id), None)
    return {"actor": actor, "memberships": memberships, "current_membership": current}
