"""Stored responses of the Responses API: per organization, gone once expired or deleted, and
expired rows dropped by the next write."""

from __future__ import annotations

import pytest

from ftserve.store.protocol import Store
from ftserve.store.records import ResponseRecord

pytestmark = pytest.mark.both_backends


def record(rid: str, org: str = "personal", expires_at: int = 100) -> ResponseRecord:
    return ResponseRecord(rid, org, 1, expires_at, f'{{"id": "{rid}"}}', '[{"id": "msg_1"}]')


def test_a_response_is_its_organizations_until_it_expires(store: Store) -> None:
    store.add_response(record("resp_a"), now=10)
    assert store.get_response("personal", "resp_a", now=10) == record("resp_a")
    assert store.get_response("other", "resp_a", now=10) is None
    assert store.get_response("personal", "resp_missing", now=10) is None
    assert store.get_response("personal", "resp_\x00", now=10) is None
    assert store.get_response("personal", "resp_a", now=100) is None  # expired


def test_delete_is_per_organization_and_once(store: Store) -> None:
    store.add_response(record("resp_b"), now=10)
    assert not store.delete_response("other", "resp_b", now=10)
    assert not store.delete_response("personal", "resp_\x00", now=10)
    assert store.delete_response("personal", "resp_b", now=10)
    assert not store.delete_response("personal", "resp_b", now=10)
    assert store.get_response("personal", "resp_b", now=10) is None


def test_an_expired_response_cannot_be_deleted_and_the_next_write_drops_it(store: Store) -> None:
    store.add_response(record("resp_old", expires_at=50), now=10)
    store.add_response(record("resp_new", org="other", expires_at=500), now=20)
    assert not store.delete_response("personal", "resp_old", now=60)
    store.add_response(record("resp_newer", expires_at=500), now=60)
    # Dropped, not only hidden: even a clock turned back does not bring it back.
    assert store.get_response("personal", "resp_old", now=10) is None
    assert store.get_response("other", "resp_new", now=60) == record(
        "resp_new", org="other", expires_at=500
    )
