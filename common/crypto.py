"""Encryption at rest for upstream credentials.

Fernet (AES-128-CBC + HMAC-SHA256) under keys derived from GATEWAY_ENCRYPTION_KEYS: the first key
encrypts, every key decrypts, so a key is rotated by putting the new one first and re-saving the
credentials before the old one is dropped. Without the variable (the embedded mode) the key derives
from SECRET_KEY.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    # Any string works as a key: its SHA-256 is the 32 bytes Fernet wants.
    return MultiFernet([Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest())) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet(tuple(settings.GATEWAY_ENCRYPTION_KEYS)).encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext; ValueError when no configured key opens it (the keys changed)."""
    try:
        return _fernet(tuple(settings.GATEWAY_ENCRYPTION_KEYS)).decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("credential cannot be decrypted with GATEWAY_ENCRYPTION_KEYS") from None
