"""API keys: parsing, hashing, scopes, loopback binding without keys."""

from __future__ import annotations

import pytest

from common.errors import Forbidden, InvalidInput, Unauthorized
from server.auth import KeyRing, bind_address, is_loopback


def test_keys_are_kept_hashed_and_scoped():
    ring = KeyRing.parse("reader-key-1:read, admin-key-1:admin")
    assert ring.enabled and all(len(h) == 32 for h, _ in ring.hashed)
    assert "reader-key-1" not in repr(ring)
    assert ring.scope_of("Bearer reader-key-1") == "read"
    assert ring.scope_of("bearer admin-key-1") == "admin"


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer wrong-key-1"])
def test_missing_or_unknown_key_is_unauthorized(header):
    with pytest.raises(Unauthorized):
        KeyRing.parse("reader-key-1:read").check(header, "read")


def test_read_key_cannot_do_admin_work_but_admin_can_read():
    ring = KeyRing.parse("reader-key-1:read,admin-key-1:admin")
    with pytest.raises(Forbidden):
        ring.check("Bearer reader-key-1", "admin")
    ring.check("Bearer admin-key-1", "read")
    ring.check("Bearer admin-key-1", "admin")


@pytest.mark.parametrize("spec", ["nokey", "short:read", "long-enough-key:root", ":read"])
def test_bad_key_spec_is_invalid_input_without_echoing_the_key(spec):
    with pytest.raises(InvalidInput) as e:
        KeyRing.parse(spec)
    assert "long-enough-key" not in str(e.value)


def test_no_keys_allows_everything_but_refuses_a_public_address():
    ring = KeyRing.parse("")
    ring.check(None, "admin")
    with pytest.raises(InvalidInput, match="--insecure"):
        bind_address("0.0.0.0", ring)
    host, warning = bind_address("0.0.0.0", ring, insecure=True)
    assert host == "0.0.0.0" and "no API keys" in (warning or "")
    assert bind_address("127.0.0.1", ring) == ("127.0.0.1", None)
    assert bind_address("0.0.0.0", KeyRing.parse("admin-key-1:admin")) == ("0.0.0.0", None)


def test_loopback_detection():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.org")
