"""Batches: create, read per organization, pages, the claim and its lease, validated lines added
once, each line's result recorded once under a current claim, guarded updates with the output
files."""

from __future__ import annotations

import pytest

from ftserve.store.batch_records import BatchLine, BatchRecord
from ftserve.store.protocol import Store, UnknownCursor
from ftserve.store.records import FileRecord

pytestmark = pytest.mark.both_backends


def _batch(n: int, org: str = "personal") -> BatchRecord:
    return BatchRecord(
        f"batch_{n}", org, "/v1/chat/completions", f"file-{n}", "24h", "validating", n, n + 86400
    )


def test_batches_read_per_organization_and_page(store: Store) -> None:
    for n in range(1, 5):
        store.create_batch(_batch(n))
    store.create_batch(_batch(9, "other"))
    assert store.get_batch("personal", "batch_1") == _batch(1)
    assert store.get_batch("other", "batch_1") is None
    assert store.get_batch(None, "batch_9") == _batch(9, "other")
    assert store.get_batch("personal", "batch\x00") is None
    page = store.list_batches("personal", after=None, limit=3)
    assert [b.id for b in page.items] == ["batch_4", "batch_3", "batch_2"] and page.has_more
    page = store.list_batches("personal", after="batch_2", limit=3)
    assert [b.id for b in page.items] == ["batch_1"] and not page.has_more
    with pytest.raises(UnknownCursor):
        store.list_batches("personal", after="batch_9", limit=3)


def test_a_claim_fences_lines_and_results(store: Store) -> None:
    store.create_batch(_batch(1))
    claimed = store.claim_batch("w1", 100.0, 30.0)
    assert claimed is not None and claimed.claim_token and claimed.lease_owner == "w1"
    assert store.claim_batch("w2", 110.0, 30.0) is None  # held
    token = claimed.claim_token
    lines = [BatchLine(i, f"c{i}", '{"model":"m"}') for i in (1, 2, 3)]
    assert store.add_batch_lines("batch_1", "stale", lines, {"status": "in_progress"}) is None
    moved = store.add_batch_lines(
        "batch_1", token, lines, {"status": "in_progress", "total": 3, "model": "m"}
    )
    assert moved is not None and moved.status == "in_progress" and moved.total == 3
    assert store.add_batch_lines("batch_1", token, lines, {"status": "in_progress"}) is None
    assert store.renew_batch_lease("batch_1", token, 200.0)
    assert not store.renew_batch_lease("batch_1", "stale", 300.0)

    assert store.finish_batch_line("batch_1", token, 2, '{"r":2}', False, 5)
    assert not store.finish_batch_line("batch_1", token, 2, '{"r":"again"}', False, 6)
    assert not store.finish_batch_line("batch_1", "stale", 3, '{"r":3}', True, 6)
    assert [x.line for x in store.batch_lines("batch_1", pending=True)] == [1, 3]
    every = store.batch_lines("batch_1", pending=False)
    assert [(x.custom_id, x.result) for x in every] == [
        ("c1", None),
        ("c2", '{"r":2}'),
        ("c3", None),
    ]
    assert [x.line for x in store.batch_lines("batch_1", pending=False, after=1, limit=1)] == [2]

    # The lease ran out: another runner takes the batch, and the first one's writes are refused.
    taken = store.claim_batch("w2", 201.0, 30.0)
    assert taken is not None and taken.claim_token != token and taken.completed == 1
    assert not store.finish_batch_line("batch_1", token, 1, '{"r":1}', False, 7)
    assert store.finish_batch_line("batch_1", taken.claim_token or "", 3, '{"e":3}', True, 7)
    now = store.get_batch("personal", "batch_1")
    assert now is not None and (now.completed, now.failed) == (1, 1)

    out = FileRecord("file-out", "personal", 3, 8, "batch_1_output.jsonl", "batch_output", "b/o")
    assert store.update_batch("batch_1", expect={"in_progress"}, changes={}, token=token) is None
    done = store.update_batch(
        "batch_1",
        expect={"in_progress"},
        changes={"status": "completed", "output_file_id": "file-out", "claim_token": None},
        token=taken.claim_token,
        add_files=[out],
    )
    assert done is not None and done.status == "completed" and done.output_file_id == "file-out"
    assert store.get_file("personal", "file-out", 0) == out
    assert store.claim_batch("w3", 1e9, 30.0) is None  # finished: nothing to run
    cancel = store.update_batch("batch_1", expect={"in_progress"}, changes={"status": "cancelling"})
    assert cancel is None
