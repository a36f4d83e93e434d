"""What every transport returns or raises. Transient errors are retried; permanent ones are not."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Sent:
    status_code: int | None = None
    excerpt: str = ""


class TransportError(Exception):
    """A failed send. permanent=True: retrying cannot help (4xx, bad configuration)."""

    def __init__(self, message: str, *, permanent: bool = False, status_code: int | None = None,
                 retry_after: float | None = None, excerpt: str = ""):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status_code = status_code
        self.retry_after = retry_after
        self.excerpt = excerpt


def is_transient_status(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds, from either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        from django.utils import timezone

        return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def excerpt(body: bytes | str | None, limit: int = 500) -> str:
    if body is None:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return text[:limit]
