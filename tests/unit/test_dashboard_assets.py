"""The dashboard's pages and script modules, without a browser: every module is served as
JavaScript, every import names a module the import map pins to its hash, the import map is the
one inline script the policy allows, and the facts a page embeds are the server's own (the
browser test, tests/e2e/test_dashboard.py, runs them)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from ftserve.events import metrics
from ftserve.jobs.states import FINAL, Action, sources
from ftserve.web.facts import facts_json, server_facts
from ftserve.web.routes import build_routes, load_assets

MODULE_LINES = 300
IMPORT = re.compile(r'^import \{[^}]*\} from "\./([\w-]+\.js)";$', re.MULTILINE)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(Starlette(routes=build_routes())) as c:
        yield c


def _between(html: str, start: str, end: str = "</script>") -> str:
    return html.split(start, 1)[1].split(end, 1)[0]


def test_every_module_is_served_as_javascript_and_small(client: TestClient) -> None:
    modules = [name for name in load_assets() if name.endswith(".js")]
    assert "app.js" in modules and len(modules) > 5
    for name in modules:
        resp = client.get(f"/static/{name}")
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == "text/javascript; charset=utf-8", name
        assert resp.text.count("\n") <= MODULE_LINES, name
        for imported in IMPORT.findall(resp.text):
            assert imported in modules, (name, imported)


def test_the_import_map_pins_every_module_and_is_the_only_inline_script(
    client: TestClient,
) -> None:
    page = client.get("/jobs/ftjob-x")
    html = page.text
    import_map = _between(html, '<script type="importmap">')
    versions = {name: etag.strip('"') for name, (_, etag) in load_assets().items()}
    pinned = json.loads(import_map)["imports"]
    for name, version in versions.items():
        if name.endswith(".js"):
            assert pinned[f"/static/{name}"] == f"/static/{name}?v={version}"
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    policy = page.headers["content-security-policy"]
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    # The entry is a module; the only other scripts are the map and the facts (data, never run).
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == [
        '<script type="application/json" id="server-facts">',
        '<script type="importmap">',
        f'<script type="module" src="/static/app.js?v={versions["app.js"]}">',
    ]


def test_each_page_embeds_the_servers_facts(client: TestClient) -> None:
    for path in ("/", "/jobs/ftjob-x", "/new", "/chat"):
        html = client.get(path).text
        embedded = _between(html, '<script type="application/json" id="server-facts">')
        assert json.loads(embedded) == server_facts(), path
    facts = server_facts()
    assert facts["final"] == sorted(FINAL)
    assert facts["allowed"]["pause"] == sorted(sources(Action.PAUSE))
    assert [f["name"] for f in facts["metrics"]["fields"]] == list(metrics.NAMES)


def test_facts_cannot_close_their_script_element() -> None:
    text = facts_json()
    assert "<" not in text
    assert json.loads(text) == server_facts()
