"""Auth headers, URL prefixes and the error envelope on every kind of failure."""

from __future__ import annotations

import httpx2 as httpx
import openai
import pytest

from tests.conftest import API_KEY, Server

pytestmark = pytest.mark.both_backends  # the [postgres] ids too (tests/conftest.py)


def _envelope(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    return dict(err)


@pytest.mark.parametrize("azure", [False, True])
@pytest.mark.parametrize("api_key_header", [False, True])
def test_both_prefixes_and_both_auth_headers(
    server: Server, azure: bool, api_key_header: bool
) -> None:
    client = server.client(azure=azure, api_key_header=api_key_header)
    page = client.fine_tuning.jobs.list(limit=1)
    assert page.object == "list"
    resp = client.models.with_raw_response.list()
    assert resp.headers["x-request-id"]
    assert ("apim-request-id" in resp.headers) == azure


def test_api_version_query_is_accepted(server: Server) -> None:
    resp = httpx.get(
        server.azure_url + "/models?api-version=2025-04-01-preview", headers={"api-key": API_KEY}
    )
    assert resp.status_code == 200
    classic = httpx.get(
        server.root + "/openai/models?api-version=2024-10-21", headers={"api-key": API_KEY}
    )
    assert classic.status_code == 200


def test_wrong_key_is_401_and_never_echoed(server: Server) -> None:
    wrong = "sk-wrong-key-abcdefghijklmnop"
    client = server.client(key=wrong)
    with pytest.raises(openai.AuthenticationError) as info:
        client.fine_tuning.jobs.list()
    assert info.value.code == "invalid_api_key"
    assert wrong not in str(info.value.body)
    resp = httpx.get(
        server.base_url + "/fine_tuning/jobs", headers={"Authorization": f"Bearer {wrong}"}
    )
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith("Bearer realm=")
    err = _envelope(resp)
    assert err["type"] == "invalid_request_error" and err["param"] is None


def test_missing_key_is_401(server: Server) -> None:
    resp = httpx.get(server.azure_url + "/fine_tuning/jobs/ftjob-x/events")
    assert resp.status_code == 401
    err = _envelope(resp)
    assert err["code"] is None
    assert "didn't provide an API key" in str(err["message"])
    assert resp.headers["apim-request-id"] == resp.headers["x-request-id"]


def test_unknown_route_and_wrong_method(server: Server) -> None:
    h = {"Authorization": f"Bearer {API_KEY}"}
    resp = httpx.get(server.base_url + "/no/such/thing", headers=h)
    assert resp.status_code == 404
    assert _envelope(resp)["message"] == "Invalid URL (GET /v1/no/such/thing)"
    assert resp.headers["x-request-id"]
    resp = httpx.put(server.base_url + "/files", headers=h)
    assert resp.status_code == 405
    _envelope(resp)
    assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_malformed_json_is_400(server: Server) -> None:
    h = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    resp = httpx.post(server.base_url + "/fine_tuning/jobs", headers=h, content=b"{not json")
    assert resp.status_code == 400
    assert "could not parse the JSON body" in str(_envelope(resp)["message"])
    resp = httpx.post(server.base_url + "/fine_tuning/jobs", headers=h, content=b"[1, 2]")
    assert resp.status_code == 400
    assert _envelope(resp)["code"] == "invalid_type"


def test_oversized_json_body_is_413(server: Server) -> None:
    h = {"Authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    resp = httpx.post(
        server.base_url + "/fine_tuning/jobs",
        headers=h,
        content=b'{"model": "' + b"x" * (5 * 1024 * 1024) + b'"}',
    )
    assert resp.status_code == 413
    _envelope(resp)


def test_openapi_document_is_served(server: Server) -> None:
    resp = httpx.get(server.root + "/openapi.json")
    assert resp.status_code == 200
    doc = resp.json()
    assert doc["openapi"].startswith("3.")
    assert "/fine_tuning/jobs/{fine_tuning_job_id}/events" in doc["paths"] or any(
        p.endswith("/events") for p in doc["paths"]
    )


def test_azure_openai_client_on_the_classic_routes(server: Server) -> None:
    """openai.AzureOpenAI talks to {endpoint}/openai/... with api-version and an api-key header."""
    with openai.AzureOpenAI(
        azure_endpoint=server.root, api_key=API_KEY, api_version="2024-10-21", max_retries=0
    ) as client:
        assert client.fine_tuning.jobs.list(limit=1).object == "list"
        with pytest.raises(openai.NotFoundError) as info:
            client.fine_tuning.jobs.retrieve("ftjob-nope")
        assert info.value.code == "fine_tune_not_found"
