"""The one SendGrid client module: v3 /v3/mail/send through the `sendgrid` package.

Notifications and Django's own mail (SendGridEmailBackend) both go through `send_v3`, whose base
URL is settings.SENDGRID_API_URL so tests point it at a local fake. Without SENDGRID_API_KEY
(embedded mode) notification emails go through Django's configured backend (console).
"""

from __future__ import annotations

import logging
import urllib.error
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from .base import Sent, TransportError, excerpt, is_transient_status, parse_retry_after

logger = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10


def _address(value: str) -> dict:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def v3_payload(*, to: list[str], subject: str, text: str, html: str | None = None, from_email: str | None = None,
               cc=(), bcc=(), reply_to: str | None = None, custom_args: dict | None = None) -> dict:
    """The exact JSON SendGrid's v3 mail/send expects (text/plain must come before text/html)."""
    personalization = {"to": [_address(a) for a in to]}
    if cc:
        personalization["cc"] = [_address(a) for a in cc]
    if bcc:
        personalization["bcc"] = [_address(a) for a in bcc]
    content = [{"type": "text/plain", "value": text or " "}]
    if html:
        content.append({"type": "text/html", "value": html})
    payload = {"personalizations": [personalization], "from": _address(from_email or settings.DEFAULT_FROM_EMAIL),
               "subject": subject, "content": content}
    if reply_to:
        payload["reply_to"] = _address(reply_to)
    if custom_args:
        payload["custom_args"] = {k: str(v) for k, v in custom_args.items()}
    return payload


def client() -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=settings.SENDGRID_API_KEY, host=settings.SENDGRID_API_URL.rstrip("/"))
    sg.client.timeout = TIMEOUT_SECONDS
    return sg


def send_v3(payload: dict) -> Sent:
    """Posts one v3 payload. 2xx -> Sent; 429/5xx/network -> transient; other 4xx -> permanent."""
    try:
        response = client().send(payload)
    except HTTPError as exc:
        status = exc.status_code
        headers = exc.headers or {}
        retry_after = parse_retry_after(headers.get("Retry-After")) if hasattr(headers, "get") else None
        raise TransportError(f"SendGrid answered {status}", permanent=not is_transient_status(status),
                             status_code=status, retry_after=retry_after, excerpt=excerpt(exc.body)) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise TransportError(f"SendGrid unreachable: {exc}") from None
    return Sent(status_code=response.status_code, excerpt=excerpt(response.body))


def send_email(*, to: str, subject: str, text: str, html: str, custom_args: dict | None = None) -> Sent:
    if settings.SENDGRID_API_KEY:
        return send_v3(v3_payload(to=[to], subject=subject, text=text, html=html, custom_args=custom_args))
    message = EmailMultiAlternatives(subject=subject, body=text, to=[to])
    message.attach_alternative(html, "text/html")
    message.send()
    return Sent(status_code=None, excerpt="sent through the Django email backend")


class SendGridEmailBackend(BaseEmailBackend):
    """Django's email (password resets, invitations) through the same SendGrid client."""

    def send_messages(self, email_messages) -> int:
        sent = 0
        for message in email_messages:
            html = next((body for body, mime in getattr(message, "alternatives", []) if mime == "text/html"), None)
            if message.content_subtype == "html":
                html, text = message.body, ""
            else:
                text = message.body
            reply_to = message.reply_to[0] if message.reply_to else None
            try:
                send_v3(v3_payload(to=list(message.to), cc=list(message.cc), bcc=list(message.bcc),
                                   subject=message.subject, text=text, html=html,
                                   from_email=message.from_email, reply_to=reply_to))
                sent += 1
            except TransportError:
                if not self.fail_silently:
                    raise
                logger.warning("SendGrid refused an email", exc_info=True)
        return sent
