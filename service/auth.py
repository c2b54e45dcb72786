"""API keys: parsed from `LETHE_API_KEYS`, kept only as sha256 hashes.

Entries are `key:tenant` or `key:tenant:admin`; `key` may be given already hashed as
`sha256-<64 hex>`, so the configuration need not hold plain keys either.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

HASHED = re.compile(r"^sha256-([0-9a-f]{64})$")


@dataclass(frozen=True)
class Caller:
    tenant: str
    admin: bool = False


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_api_keys(text: str) -> dict[str, Caller]:
    """{sha256 of key: caller} from `key:tenant[:admin],...`; ValueError names a bad entry."""
    keys = {}
    for position, entry in enumerate(filter(None, (e.strip() for e in text.split(","))), 1):
        parts = entry.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1] or parts[2:] not in ([], ["admin"]):
            raise ValueError(f"LETHE_API_KEYS entry {position} must be key:tenant or key:tenant:admin")
        hashed = HASHED.match(parts[0])
        keys[hashed.group(1) if hashed else hash_key(parts[0])] = Caller(parts[1], admin=len(parts) == 3)
    return keys


def authenticate(keys: dict[str, Caller], authorization: str | None) -> Caller | None:
    """The caller of an `Authorization: Bearer <key>` header, or None."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return keys.get(hash_key(key.strip()))
