"""Provider credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) with CREDENTIALS_KEY.

When CREDENTIALS_KEY is empty (development, tests) the key is derived from SECRET_KEY with
HKDF-SHA256 (info "anomalyhub provider credentials"), so rotating SECRET_KEY then makes stored
credentials unreadable; production sets CREDENTIALS_KEY explicitly. Several keys may be given
comma-separated (newest first) to rotate: new values use the first, all of them decrypt.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_INFO = b"anomalyhub provider credentials"


class CredentialUnreadable(Exception):
    pass


def derive_key(secret_key: str) -> bytes:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


@lru_cache(maxsize=4)
def _fernet(configured: str, secret_key: str) -> MultiFernet:
    keys = [k.strip() for k in (configured or "").split(",") if k.strip()] or [derive_key(secret_key)]
    return MultiFernet([Fernet(k) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(getattr(settings, "CREDENTIALS_KEY", "") or "", settings.SECRET_KEY)


def encrypt(secret: str) -> str:
    return fernet().encrypt(secret.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode()
    except InvalidToken:
        raise CredentialUnreadable("The stored credential cannot be decrypted (was CREDENTIALS_KEY changed?); "
                                   "set it again.") from None
