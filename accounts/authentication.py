"""`Authorization: Bearer ahk_...` for programs. Keys are looked up by prefix, compared by hash."""

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiKey
from .services import resolve_api_key

# Writing last_used_at on every request would serialize all traffic of a key on one row.
LAST_USED_GRANULARITY = timedelta(seconds=60)


def key_from_header(value: str | None) -> str | None:
    if not value:
        return None
    parts = value.split()
    if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].startswith(ApiKey.PREFIX):
        return parts[1]
    return None


def authenticate_key(raw: str) -> ApiKey | None:
    key = resolve_api_key(raw)
    if key is not None:
        now = timezone.now()
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_GRANULARITY:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
    return key


def throttled(message: str, wait: float) -> exceptions.Throttled:
    """DRF's 429 (with Retry-After) carrying our message as it is; DRF's own constructor would
    append "Expected available in N seconds." to it."""
    error = exceptions.Throttled(wait=wait)
    error.detail = exceptions.ErrorDetail(message, code="throttled")
    return error


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.headers.get("Authorization")
        raw = key_from_header(header)
        if raw is None:
            if header and header.split()[0].lower() == "bearer":
                raise exceptions.AuthenticationFailed("Malformed API key; expected 'Bearer ahk_...'.")
            return None
        from . import bruteforce
        from .audit import client_ip

        try:
            key = bruteforce.authenticate_key(raw, client_ip(request))
        except bruteforce.TooManyAttempts as exc:
            raise throttled(exc.message, exc.wait)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        # The key itself is the principal, never its creator: request.user must not hand a program
        # what the person who made the key may do (tenancy.Actor).
        return (_KeyUser(key), key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class _KeyUser:
    """request.user of a request made with an API key: authenticated, not a person, no personal rights."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    pk = None
    id = None
    email = ""

    def __init__(self, key):
        self.key = key

    def __str__(self):
        return f"api-key:{self.key.prefix}"
