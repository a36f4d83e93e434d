"""Members and invitations of the current organization, and API key revocation."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import services as account_services
from accounts.models import ApiKey, Invitation, Membership, Role
from anomalyhub.lib.errors import ServiceError

from .forms import InviteForm
from .pages import attempt, org_page


@org_page
def members(request, actor):
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invitation, _ = account_services.invite_member(actor=actor, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Invitation sent to {invitation.email}.")
            return redirect("frontend:members")
    return render(request, "frontend/members.html", {
        "form": form, "roles": Role.choices, "can_manage": actor.can("manage"), "me": actor.user_id,
        "export_datasets": [("points", "Points (ticks, bars, metrics)"), ("anomalies", "Anomalies"), ("rules", "Rules")],
        "members": Membership.objects.for_actor(actor).select_related("user").order_by("created_at"),
        "invitations": (Invitation.objects.for_actor(actor, "manage").filter(accepted_at=None)
                        .order_by("-created_at") if actor.can("manage") else [])})


@require_POST
@org_page
def member_action(request, actor, membership_id, action):
    """POST role (with a new role) or remove; the services check who may do what to whom."""
    get_object_or_404(Membership.objects.for_actor(actor), pk=membership_id)
    if action == "role":
        attempt(request, lambda: account_services.change_role(actor=actor, membership_id=membership_id,
                                                              role=request.POST.get("role", "")),
                lambda m: f"{m.user.email} is now {m.role}.")
    elif action == "remove":
        attempt(request, lambda: account_services.remove_member(actor=actor, membership_id=membership_id),
                "Membership removed.")
    return redirect("frontend:members")


@require_POST
@org_page
def api_key_revoke(request, actor, key_id):
    get_object_or_404(ApiKey.objects.for_actor(actor), pk=key_id)
    attempt(request, lambda: account_services.revoke_api_key(actor=actor, key_id=key_id),
            lambda key: f"Key {key.name} revoked; programs using it now get 401.")
    return redirect("frontend:api-keys")
