"""API keys: `key:scope,key2:scope` from settings, kept only as SHA-256 hashes, sent as Bearer tokens.

Scopes: `read` (search, answer, entities, chat, embeddings, models) and `admin` (documents, reindex,
jobs and everything `read` allows). With no key configured every request is allowed, so the server
refuses a non-loopback address unless the operator says `--insecure` (`bind_address`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from common.errors import Forbidden, InvalidInput, Unauthorized

SCOPES = ("read", "admin")
_GRANTS = {"read": {"read"}, "admin": {"read", "admin"}}
LOOPBACK = "127.0.0.1"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class KeyRing:
    """Hashed keys and their scopes; `enabled` is False when none is configured."""

    hashed: tuple[tuple[bytes, str], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.hashed)

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """`"k1:read,k2:admin"` -> KeyRing; a malformed entry is an InvalidInput naming it (not the key)."""
        out: list[tuple[bytes, str]] = []
        for n, item in enumerate((s.strip() for s in spec.split(",")), 1):
            if not item:
                continue
            key, sep, scope = item.rpartition(":")
            if not sep or not key or scope not in SCOPES:
                raise InvalidInput(f"server.api_keys entry {n}: expected KEY:read or KEY:admin")
            if len(key) < 8:
                raise InvalidInput(f"server.api_keys entry {n}: keys need at least 8 characters")
            out.append((_digest(key), scope))
        return cls(tuple(out))

    def scope_of(self, authorization: str | None) -> str:
        """The scope of the Bearer key in an Authorization header; Unauthorized if missing or unknown."""
        if not authorization:
            raise Unauthorized("missing API key: send `Authorization: Bearer KEY`")
        kind, _, token = authorization.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("malformed Authorization header: expected `Bearer KEY`")
        d = _digest(token.strip())
        found = None
        for h, scope in self.hashed:  # compare every entry in constant time
            if hmac.compare_digest(h, d):
                found = scope
        if found is None:
            raise Unauthorized("unknown API key")
        return found

    def check(self, authorization: str | None, needed: str) -> None:
        if not self.enabled:
            return
        scope = self.scope_of(authorization)
        if needed not in _GRANTS[scope]:
            raise Forbidden(f"this key has scope {scope!r}; the operation needs {needed!r}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_address(host: str, keys: KeyRing, insecure: bool = False) -> tuple[str, str | None]:
    """The address to bind and a warning. Without keys every request is allowed, so a non-loopback
    address is refused (an error, not a silent rebind to loopback) unless `insecure` is given."""
    if keys.enabled or is_loopback(host):
        return host, None
    if not insecure:
        raise InvalidInput(f"no API keys configured (server.api_keys / RAGKILN_SERVER__API_KEYS): refusing to serve "
                           f"{host} without authentication; set keys, bind {LOOPBACK}, or pass --insecure")
    return host, f"serving {host} with no API keys (--insecure): anyone who can reach it may write and reindex"
