"""Key format: `sk_cdx_<public_id>_<secret>`. Pure functions, no database."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

PREFIX = "sk_cdx_"
_ALPHABET = string.ascii_letters + string.digits
_PUBLIC_ALPHABET = string.ascii_lowercase + string.digits
PUBLIC_ID_LENGTH = 12
SECRET_LENGTH = 32  # 32 base62 characters: 190 bits of entropy
_KEY_RE = re.compile(rf"^sk_cdx_([a-z0-9]{{{PUBLIC_ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})$")


def generate() -> tuple[str, str, str]:
    """A new key: (plaintext, public_id, secret)."""
    public_id = "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIX}{public_id}_{secret}", public_id, secret


def parse(key: str) -> tuple[str, str] | None:
    """(public_id, secret) of a well-formed key, else None."""
    match = _KEY_RE.match(key)
    return (match.group(1), match.group(2)) if match else None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
