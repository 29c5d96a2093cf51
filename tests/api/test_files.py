"""Files through the official SDK: upload with validation, list, retrieve, content, delete."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2 as httpx
import openai
import pytest

from tests.conftest import OTHER_ORG_KEY, Server, chat_rows, jsonl, upload

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


def test_upload_retrieve_content_delete(client: openai.OpenAI) -> None:
    data = jsonl(chat_rows(12))
    f = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    assert f.id.startswith("file-") and len(f.id) == len("file-") + 24
    assert (f.object, f.purpose, f.filename, f.bytes, f.status) == (
        "file",
        "fine-tune",
        "train.jsonl",
        len(data),
        "processed",
    )
    assert client.files.retrieve(f.id) == f
    assert client.files.content(f.id).read() == data
    deleted = client.files.delete(f.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (f.id, True, "file")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(f.id)


def test_other_purposes_are_stored_unvalidated(client: openai.OpenAI) -> None:
    f = client.files.create(file=("notes.txt", b"not json at all"), purpose="assistants")
    assert f.purpose == "assistants"
    assert client.files.content(f.id).read() == b"not json at all"


def test_bad_purpose(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("x.jsonl", b"{}"), purpose="nonsense")  # type: ignore[arg-type]
    assert info.value.param == "purpose"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (
            b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\nnot json\n',
            "Line 2",
        ),
        (jsonl(chat_rows(3)) + b'{"messages": [{"role": "bot", "content": "x"}]}\n', "Line 4"),
        (
            b'{"messages": [{"role": "user", "content": "hi", "weight": 1}, {"role": "assistant", "content": "a"}]}\n',
            "Line 1",
        ),
        (b"", "no examples"),
    ],
)
def test_bad_fine_tune_file_names_the_line(
    client: openai.OpenAI, content: bytes, fragment: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.files.create(file=("bad.jsonl", content), purpose="fine-tune")
    assert info.value.param == "file"
    assert fragment in info.value.message


def test_all_three_formats_accepted(client: openai.OpenAI) -> None:
    pc = [{"prompt": f"p{i}", "completion": f" c{i}"} for i in range(3)]
    pref = [
        {
            "input": {"messages": [{"role": "user", "content": f"q{i}"}]},
            "preferred_output": [{"role": "assistant", "content": "good"}],
            "non_preferred_output": [{"role": "assistant", "content": "bad"}],
        }
        for i in range(3)
    ]
    for rows in (pc, pref, chat_rows(3)):
        upload(client, rows)


def test_list_order_limit_after_purpose(server: Server, tmp_path: Path) -> None:
    client = server.client(key=OTHER_ORG_KEY)  # its own organization: a clean list
    ids = [upload(client, chat_rows(1, start=i), name=f"f{i}.jsonl") for i in range(5)]
    client.files.create(file=("a.txt", b"x"), purpose="assistants")
    listed = [f.id for f in client.files.list(purpose="fine-tune")]
    assert listed == ids[::-1]
    page = client.files.list(purpose="fine-tune", limit=2, order="asc")
    assert [f.id for f in page.data] == ids[:2] and page.has_more
    assert page.first_id == ids[0] and page.last_id == ids[1]
    assert [f.id for f in client.files.list(purpose="fine-tune", limit=2, order="asc")] == ids
    with pytest.raises(openai.BadRequestError) as info:
        client.files.list(after="file-doesnotexist")
    assert info.value.param == "after"
    with pytest.raises(openai.BadRequestError) as info:
        client.files.list(limit=0)
    assert info.value.param == "limit"


def test_files_are_scoped_to_the_organization(server: Server, client: openai.OpenAI) -> None:
    fid = upload(client, chat_rows(2))
    other = server.client(key=OTHER_ORG_KEY)
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(fid)
    assert fid not in [f.id for f in other.files.list()]


def test_expires_after(client: openai.OpenAI) -> None:
    f = client.files.create(
        file=("e.jsonl", jsonl(chat_rows(1))),
        purpose="fine-tune",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert f.expires_at == f.created_at + 3600
    with pytest.raises(openai.BadRequestError):
        client.files.create(
            file=("e.jsonl", jsonl(chat_rows(1))),
            purpose="fine-tune",
            expires_after={"anchor": "created_at", "seconds": 5},
        )


def test_size_limit_is_413(fresh_server: Server) -> None:
    fresh_server.env["FTSERVE_MAX_UPLOAD_BYTES"] = "1000"
    fresh_server.start()
    client = fresh_server.client()
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.jsonl", jsonl(chat_rows(100))), purpose="fine-tune")
    assert info.value.status_code == 413
    assert info.value.param == "file"
    assert client.files.list().data == []
    tmp = fresh_server.data_dir / "blobs" / "tmp"
    assert list(tmp.iterdir()) == []


def test_upload_without_multipart(server: Server) -> None:
    from tests.conftest import API_KEY

    resp = httpx.post(
        server.base_url + "/files",
        headers={"Authorization": f"Bearer {API_KEY}"},
        content=json.dumps({"purpose": "fine-tune"}),
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "file"
