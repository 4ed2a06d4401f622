"""Key format: `sk_cdx_<public_id>_<secret>`. Pure functions, no database.

A public id is 11 random characters and a 5-character check value, an HMAC of them under the server's
secret, so that the gateway can tell a forged or random id from one it issued without asking the
database: a flood of random well-formed keys costs no query (accounts.selectors.api_key_authenticate).
36^5 check values: a random id passes once in 60 million tries. The check costs ~6 µs (measured),
against the ~2.8 ms an unknown id's lookup took; a per-process set of every issued id was the
alternative, but it must be refreshed to see new keys and grows with them, where the check needs no
state. Keys issued before ids carried a check (12 characters, `LEGACY_PUBLIC_ID_LENGTH`) are still
accepted, looked up in a per-process set of their ids, which no longer grows.
SECRET_KEY_FALLBACKS verify too, so the server's secret can be rotated the way Django rotates it.

The management API's credentials share the shape under their own prefixes: tenant admin keys
`sk_cdx_admin_<id>_<secret>` and operator tokens `sk_cdx_op_<id>_<secret>`. Their ids need no check
value (the management API looks every credential up; its traffic is light). `admin` and `op` are too
short to be an API key's public id, so a presented secret reads as exactly one kind.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from django.conf import settings

PREFIX = "sk_cdx_"
ADMIN_PREFIX = "sk_cdx_admin_"
OPERATOR_PREFIX = "sk_cdx_op_"
API, ADMIN, OPERATOR = "api", "admin", "operator"
PREFIXES = {API: PREFIX, ADMIN: ADMIN_PREFIX, OPERATOR: OPERATOR_PREFIX}
_ALPHABET = string.ascii_letters + string.digits
_PUBLIC_ALPHABET = string.ascii_lowercase + string.digits
_RANDOM_LENGTH, _CHECK_LENGTH = 11, 5
PUBLIC_ID_LENGTH = _RANDOM_LENGTH + _CHECK_LENGTH
LEGACY_PUBLIC_ID_LENGTH = 12
SECRET_LENGTH = 32  # 32 base62 characters: 190 bits of entropy
_KEY_RE = re.compile(rf"^sk_cdx_([a-z0-9]{{{PUBLIC_ID_LENGTH}}}|[a-z0-9]{{{LEGACY_PUBLIC_ID_LENGTH}}})"
                     rf"_([A-Za-z0-9]{{{SECRET_LENGTH}}})$")


def _check(random_part: str, server_secret: str) -> str:
    key = hashlib.sha256(b"gatehouse.keys.public-id:" + server_secret.encode()).digest()
    number = int.from_bytes(hmac.digest(key, random_part.encode(), "sha256")[:8], "big")
    check = []
    for _ in range(_CHECK_LENGTH):
        number, digit = divmod(number, len(_PUBLIC_ALPHABET))
        check.append(_PUBLIC_ALPHABET[digit])
    return "".join(check)


def generate() -> tuple[str, str, str]:
    """A new key: (plaintext, public_id, secret)."""
    random_part = "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(_RANDOM_LENGTH))
    public_id = random_part + _check(random_part, settings.SECRET_KEY)
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIX}{public_id}_{secret}", public_id, secret


def public_id_verifies(public_id: str) -> bool:
    """Whether a (well-formed, current-format) public id carries a check value this server made."""
    random_part, check = public_id[:_RANDOM_LENGTH], public_id[_RANDOM_LENGTH:]
    return any(hmac.compare_digest(_check(random_part, server_secret), check)
               for server_secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))


def is_legacy(public_id: str) -> bool:
    return len(public_id) == LEGACY_PUBLIC_ID_LENGTH


def parse(key: str) -> tuple[str, str] | None:
    """(public_id, secret) of a well-formed key, else None."""
    match = _KEY_RE.match(key)
    return (match.group(1), match.group(2)) if match else None


_CREDENTIAL_ID_LENGTH = 12
_CREDENTIAL_RES = {kind: re.compile(rf"^{PREFIXES[kind]}([a-z0-9]{{{_CREDENTIAL_ID_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})$")
                   for kind in (ADMIN, OPERATOR)}


def credential_generate(kind: str) -> tuple[str, str, str]:
    """A new management credential of `kind` (ADMIN or OPERATOR): (plaintext, public_id, secret)."""
    public_id = "".join(secrets.choice(_PUBLIC_ALPHABET) for _ in range(_CREDENTIAL_ID_LENGTH))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH))
    return f"{PREFIXES[kind]}{public_id}_{secret}", public_id, secret


def credential_parse(key: str, kind: str) -> tuple[str, str] | None:
    """(public_id, secret) of a well-formed management credential of `kind`, else None."""
    match = _CREDENTIAL_RES[kind].match(key)
    return (match.group(1), match.group(2)) if match else None


def kind_of(key: str) -> str | None:
    """Which kind a presented key claims to be by its prefix (None: none of ours); not a validity check."""
    for kind in (ADMIN, OPERATOR, API):  # the longer prefixes first: all start with sk_cdx_
        if key.startswith(PREFIXES[kind]):
            return kind
    return None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
