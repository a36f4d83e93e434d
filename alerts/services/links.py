"""Signed one-click links in notifications: label an anomaly, snooze a subscription.

No login: the link itself is the credential, so it is signed (django.core.signing, salted),
expires (the expiry is inside the signed value), works once (its nonce is recorded in the same
transaction as the action), and acts as the system actor of the organization it was made for.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.tenancy import system_actor
from anomalyhub.lib.errors import ConflictError, NotFoundError, ServiceError
from detection.models import Feedback
from detection.services.anomalies import label_anomaly

from ..models import AlertSubscription, Target, UsedLink
from .subscriptions import snooze

SALT = "alerts.one-click-link"
LINK_TTL = timedelta(days=7)
SNOOZES = ("1h", "session", "1d")


class LinkExpired(ServiceError):
    status = 410
    code = "link_expired"


def make_token(*, organization_id: int, action: str, obj_id: int, value: str, now: datetime | None = None) -> str:
    expires = int(((now or timezone.now()) + LINK_TTL).timestamp())
    return signing.dumps({"o": organization_id, "a": action, "i": obj_id, "v": value, "e": expires,
                          "n": secrets.token_urlsafe(12)}, salt=SALT)


def link_url(token: str) -> str:
    return f"{settings.SITE_URL}/api/v1/alerts/links/{token}/"


def label_links(anomaly, now=None) -> dict[str, str]:
    return {label: link_url(make_token(organization_id=anomaly.organization_id, action="label", obj_id=anomaly.pk,
                                       value=label, now=now)) for label in Feedback.values}


def snooze_links(subscription, now=None) -> dict[str, str]:
    return {span: link_url(make_token(organization_id=subscription.organization_id, action="snooze",
                                      obj_id=subscription.pk, value=span, now=now)) for span in SNOOZES}


def read_token(token: str, now: datetime | None = None) -> dict:
    try:
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        raise NotFoundError("This link is not valid.") from None
    if (now or timezone.now()).timestamp() > data["e"]:
        raise LinkExpired("This link has expired; use the newest notification or the web UI.")
    return data


def describe(token: str, now: datetime | None = None) -> dict:
    data = read_token(token, now)
    used = UsedLink.objects.filter(nonce=data["n"]).exists()
    return {"action": data["a"], "target": data["i"], "value": data["v"], "used": used,
            "expires_at": datetime.fromtimestamp(data["e"], tz=UTC).isoformat()}


def use_link(token: str, now: datetime | None = None) -> dict:
    """Performs the link's action once; a second use answers 409 and changes nothing."""
    now = now or timezone.now()
    data = read_token(token, now)
    actor = system_actor(data["o"])
    try:
        with transaction.atomic():
            UsedLink.objects.create(organization_id=data["o"], nonce=data["n"])
            if data["a"] == "label":
                anomaly = label_anomaly(actor=actor, anomaly_id=data["i"], label=data["v"])
                return {"action": "label", "anomaly": anomaly.pk, "label": anomaly.feedback}
            sub = AlertSubscription.objects.for_actor(actor).filter(pk=data["i"]).first()
            if sub is None:
                raise NotFoundError("The subscription no longer exists.")
            until = snooze_end(sub, data["v"], now)
            snooze(actor=actor, subscription=sub, until=until)
            return {"action": "snooze", "subscription": sub.pk, "snooze_until": until.isoformat()}
    except IntegrityError:
        raise ConflictError("This link was already used.", code="link_used") from None


def snooze_end(sub: AlertSubscription, span: str, now: datetime) -> datetime:
    if span == "1h":
        return now + timedelta(hours=1)
    if span == "1d":
        return now + timedelta(days=1)
    return session_close(_exchange_of(sub), now)


def _exchange_of(sub: AlertSubscription) -> str:
    series = sub.series if sub.target == Target.SERIES else None
    if sub.target == Target.WATCHLIST:
        series = sub.watchlist.series.exclude(exchange="").first()
    return getattr(series, "exchange", "") or "XNYS"


def session_close(exchange: str, now: datetime) -> datetime:
    """The close of the session in progress, or of the next one when the market is shut."""
    import pandas as pd

    from watchlists.calendars import get_calendar

    cal = get_calendar(exchange)
    minute = pd.Timestamp(now).tz_convert("UTC").floor("min")
    session = cal.minute_to_session(minute, direction="next")
    return cal.session_close(session).to_pydatetime()
