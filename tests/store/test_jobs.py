"""Jobs: create and read, pages newest first, the metadata filter (decided in SQL on both
databases, U+0000 included), and keys holding U+0000 answered as absent."""

from __future__ import annotations

import pytest

from ftserve.store.protocol import Store, UnknownCursor
from tests.store.records import new_job

pytestmark = pytest.mark.both_backends


def test_a_job_reads_back_as_created(store: Store) -> None:
    job = new_job(
        suffix="s",
        metadata={"team": "a"},
        integrations=[{"type": "wandb", "wandb": {"project": "p"}}],
        extensions={"x": 1},
        result_files=["file-a"],
    )
    store.create_job(job, [])
    assert store.get_job(job.id) == job
    assert store.get_job(job.id, "personal") == job
    assert store.get_job(job.id, "other") is None
    assert store.get_job("ftjob-nope") is None


def test_job_pages_walk_newest_first(store: Store) -> None:
    jobs = [new_job() for _ in range(5)]
    for job in jobs:
        store.create_job(job, [])
    store.create_job(new_job("other"), [])
    first = store.list_jobs("personal", after=None, limit=3, metadata=None)
    assert [j.id for j in first.items] == [j.id for j in jobs[:1:-1]] and first.has_more
    rest = store.list_jobs("personal", after=first.items[-1].id, limit=3, metadata=None)
    assert [j.id for j in rest.items] == [jobs[1].id, jobs[0].id] and not rest.has_more
    with pytest.raises(UnknownCursor):
        store.list_jobs("other", after=jobs[0].id, limit=3, metadata=None)
    assert [j.id for j in store.jobs_with_status("queued", 2)] == [jobs[0].id, jobs[1].id]


def test_metadata_filter_keys_are_literal(store: Store) -> None:
    a = new_job(metadata={"a.b": "1"})
    b = new_job(metadata={"a": "1"})
    store.create_job(a, [])
    store.create_job(b, [])
    found = store.list_jobs("personal", after=None, limit=10, metadata={"a.b": "1"})
    assert [j.id for j in found.items] == [a.id]


def test_metadata_with_nul_is_stored_and_filtered(store: Store) -> None:
    """U+0000 in metadata (the API allows it) is kept, and filters match it exactly; on
    PostgreSQL, where no text can hold it, one such job once made every metadata-filtered list
    of its organization fail, and so did a filter with a NUL in it."""
    nul = new_job(metadata={"k\x00": "v\x00w", "team": "a"})
    plain = new_job(metadata={"team": "a", "k": "v"})
    near = new_job(metadata={"x": '"k\\u0000":"v\\u0000w"', "team": "b"})
    for job in (nul, plain, near):
        store.create_job(job, [])

    def ids(metadata: dict[str, str], limit: int = 10) -> tuple[list[str], bool]:
        page = store.list_jobs("personal", after=None, limit=limit, metadata=metadata)
        return [j.id for j in page.items], page.has_more

    assert ids({"team": "a"}) == ([plain.id, nul.id], False)
    assert ids({"team": "a"}, limit=1) == ([plain.id], True)
    assert ids({"k\x00": "v\x00w", "team": "b"}) == ([], False)
    assert ids({"a\x00b": "x"}) == ([], False)
    assert ids({"k\x00": "v\x00w"}) == ([nul.id], False)
    assert ids({"k": "v"}) == ([plain.id], False)
    got = store.get_job(nul.id)
    assert got is not None and got.metadata == {"k\x00": "v\x00w", "team": "a"}


def test_metadata_filter_pages_with_a_cursor(store: Store) -> None:
    """The filter is decided in the query, so a page of matches is a LIMIT of the query and
    ``has_more`` says whether one more match exists, however many jobs do not match."""
    matching = [new_job(metadata={"team": "a"}) for _ in range(3)]
    for i, job in enumerate(matching):
        store.create_job(job, [])
        for _ in range(i * 3):
            store.create_job(new_job(metadata={"team": "b"}), [])
    team_a = {"team": "a"}
    first = store.list_jobs("personal", after=None, limit=2, metadata=team_a)
    assert [j.id for j in first.items] == [matching[2].id, matching[1].id] and first.has_more
    rest = store.list_jobs("personal", after=first.items[-1].id, limit=2, metadata=team_a)
    assert [j.id for j in rest.items] == [matching[0].id] and not rest.has_more


def test_keys_with_nul_name_nothing(store: Store) -> None:
    """The fuzz test sent `after=…%00…`: PostgreSQL text cannot hold U+0000, so such keys are
    answered as absent on every backend instead of a refused query (a 500); a job id with one
    is an unknown job, whoever asks."""
    job = new_job()
    store.create_job(job, [])
    bad = "x\x00y"
    assert store.get_job(bad) is None
    assert store.get_file("personal", bad, 0) is None
    assert store.delete_file("personal", bad) is None
    assert store.event_page("personal", bad, after=None, limit=5) is None
    assert store.events_after(None, bad, after=None, limit=5) is None
    assert store.events_after(bad, job.id, after=None, limit=5) is None
    assert store.list_checkpoints("personal", bad, after=None, limit=5) is None
    assert store.list_checkpoints(None, bad, after=None, limit=5) is None
    assert store.job_for_model("personal", bad) is None
    for read in (
        lambda: store.list_jobs("personal", after=bad, limit=5, metadata=None),
        lambda: store.list_files(
            "personal", purpose=None, after=bad, limit=5, ascending=False, now=0
        ),
        lambda: store.event_page("personal", job.id, after=bad, limit=5),
        lambda: store.events_after(None, job.id, after=bad, limit=5),
        lambda: store.list_checkpoints(None, job.id, after=bad, limit=5),
    ):
        with pytest.raises(UnknownCursor):
            read()
