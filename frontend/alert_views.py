"""Alerts: my subscriptions, webhook endpoints with test-send, and the delivery log."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from alerts.models import AlertSubscription, Channel, Notification, Target, WebhookEndpoint
from alerts.services import subscriptions, webhooks
from anomalyhub.lib.errors import ServiceError
from detection.models import Rule
from watchlists.models import Series, Watchlist

from .forms import SubscriptionForm, WebhookForm
from .pages import attempt, org_page

TARGET_MODELS = {Target.SERIES: Series, Target.WATCHLIST: Watchlist, Target.RULE: Rule}


def _choices(actor) -> list[tuple[str, str]]:
    return ([(f"series:{s.pk}", f"Series {s.symbol}") for s in Series.objects.for_actor(actor).order_by("symbol")]
            + [(f"watchlist:{w.pk}", f"Watchlist {w.name}") for w in Watchlist.objects.for_actor(actor).order_by("name")]
            + [(f"rule:{r.pk}", f"Rule {r.name}") for r in Rule.objects.for_actor(actor).order_by("name")])


def _form(actor, data=None, initial=None):
    return SubscriptionForm(data, initial=initial, choices=_choices(actor),
                            webhooks=WebhookEndpoint.objects.for_actor(actor).order_by("url"))


def _initial(sub: AlertSubscription) -> dict:
    target = sub.target
    if target in TARGET_MODELS:
        target = f"{target}:{getattr(sub, f'{target}_id')}"
    return {"name": sub.name, "target": target, "min_severity": sub.min_severity,
            "email": Channel.EMAIL in sub.channels, "webhook": str(sub.webhook_id or ""),
            "cooldown_seconds": sub.cooldown_seconds, "enabled": sub.enabled}


def _apply(actor, sub: AlertSubscription, data: dict) -> None:
    kind, _, pk = data["target"].partition(":")
    sub.target = kind
    for name in subscriptions.TARGET_FIELDS:
        setattr(sub, name, None)
    if kind in TARGET_MODELS:
        setattr(sub, kind, get_object_or_404(TARGET_MODELS[kind].objects.for_actor(actor), pk=pk))
    sub.webhook = (get_object_or_404(WebhookEndpoint.objects.for_actor(actor), pk=data["webhook"])
                   if data["webhook"] else None)
    sub.channels = [c for c, on in ((Channel.EMAIL, data["email"]), (Channel.WEBHOOK, sub.webhook)) if on]
    sub.name, sub.min_severity = data["name"], data["min_severity"]
    sub.cooldown_seconds, sub.enabled = data["cooldown_seconds"], data["enabled"]


@org_page
def subscription_list(request, actor):
    subs = subscriptions.visible_subscriptions(actor).select_related(
        "user", "series", "watchlist", "rule", "webhook").order_by("pk")
    return render(request, "frontend/subscriptions.html", {"subscriptions": subs})


@org_page
def subscription_edit(request, actor, subscription_id=None):
    sub = (get_object_or_404(subscriptions.visible_subscriptions(actor), pk=subscription_id) if subscription_id
           else AlertSubscription())
    form = _form(actor, request.POST or None, _initial(sub) if sub.pk else {"target": request.GET.get("target")})
    if request.method == "POST" and form.is_valid():
        _apply(actor, sub, form.cleaned_data)
        try:
            subscriptions.save_subscription(actor=actor, subscription=sub)
        except ServiceError as exc:
            form.add_error(None, exc.message)
            for errors in (exc.details or {}).values():
                form.add_error(None, [str(e) for e in errors])
        else:
            messages.success(request, f"Subscription {sub} saved. Alerts go to {sub.user.email}.")
            return redirect("frontend:subscriptions")
    return render(request, "frontend/subscription_form.html", {"form": form, "subscription": sub})


@require_POST
@org_page
def subscription_delete(request, actor, subscription_id):
    sub = get_object_or_404(subscriptions.visible_subscriptions(actor), pk=subscription_id)
    attempt(request, lambda: subscriptions.delete_subscription(actor=actor, subscription=sub),
            f"Subscription {sub} deleted.")
    return redirect("frontend:subscriptions")


@org_page
def webhook_list(request, actor):
    form = WebhookForm(request.POST or None)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = webhooks.create_endpoint(actor=actor, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error("url", exc.message)
        else:
            form = WebhookForm()
    endpoints = WebhookEndpoint.objects.for_actor(actor).order_by("url")
    return render(request, "frontend/webhooks.html", {"form": form, "endpoints": endpoints, "created": created,
                                                      "can_manage": actor.can("manage")})


@require_POST
@org_page
def webhook_action(request, actor, endpoint_id, action):
    endpoint = get_object_or_404(WebhookEndpoint.objects.for_actor(actor), pk=endpoint_id)
    if action == "test":
        attempt(request, lambda: webhooks.test_send(actor=actor, endpoint=endpoint),
                lambda n: f"Test sent to {endpoint.url}: {n.status}" + (f" ({n.last_error})" if n.last_error else "")
                + ". See the delivery log.")
    elif action == "delete":
        attempt(request, lambda: webhooks.delete_endpoint(actor=actor, endpoint=endpoint),
                f"Webhook {endpoint.url} deleted.")
    return redirect("frontend:webhooks")


@org_page
def delivery_log(request, actor):
    qs = Notification.objects.for_actor(actor)
    if not actor.can("manage"):  # members see their own notifications, admins everyone's
        qs = qs.filter(user_id=actor.user_id)
    rows = qs.select_related("endpoint", "subscription").order_by("-pk")[:200]
    return render(request, "frontend/deliveries.html", {"notifications": rows})
