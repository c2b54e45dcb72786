"""The console's and the API docs' files as the gateway serves them, and GET /v1/methods (no browser).

Every file a page names is served; none is fetched from another host (no CDN); the method
settings carry their defaults and the bounds a job body is checked against.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.db import migrate
from service.settings import Settings

KEY = {"Authorization": "Bearer console-key"}
STATIC = Path(__file__).resolve().parents[2] / "service" / "console" / "static"
REFERENCE = re.compile(r"""(?:src|href)="([^"#][^"]*)"|from "(\.[^"]+)"|import "(\.[^"]+)\"""")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(data_dir=tmp_path_factory.mktemp("console") / "data", api_keys="console-key:tenant-c")
    migrate(settings.database_url)
    with TestClient(create_app(settings)) as client:
        yield client


def references(text: str, base: str) -> set[str]:
    """The URLs a page or script names, resolved against the URL `base` it was served from."""
    found = {next(g for g in match.groups() if g) for match in REFERENCE.finditer(text)}
    found = {url for url in found if "${" not in url}  # a selector built in a script, not a file
    return {url if url.startswith("/") else _join(base, url) for url in found}


def _join(base: str, relative: str) -> str:
    parts = base.rsplit("/", 1)[0].split("/")
    for piece in relative.split("/"):
        if piece == "..":
            parts.pop()
        elif piece != ".":
            parts.append(piece)
    return "/".join(parts)


def test_root_and_console_redirect_to_the_console(client):
    for path in ("/", "/console"):
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (307, "/console/")


def test_every_file_the_console_names_is_served_with_its_policy(client):
    pending, served = {"/console/"}, set()
    while pending:
        url = pending.pop()
        answer = client.get(url)
        assert answer.status_code == 200, url
        assert "default-src 'self'" in answer.headers["content-security-policy"], url
        served.add(url)
        if url.endswith(("/", ".html", ".js")):
            pending |= {u for u in references(answer.text, url) if u.startswith("/console/")} - served
    shipped = {"/console/" + str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file()}
    assert shipped - {"/console/index.html"} <= served  # nothing shipped is unreachable


def test_the_console_names_no_other_host(client):
    for path in STATIC.rglob("*"):
        text = path.read_text() if path.is_file() else ""
        hosts = set(re.findall(r"https?://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not hosts, (path, hosts)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_api_docs_load_their_files_from_the_gateway(client, path):
    page = client.get(path)
    assert page.status_code == 200
    urls = set(re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)) | set(re.findall(r"url: ?['\"]([^'\"]+)", page.text))
    assert urls and all(url.startswith("/") for url in urls), urls
    for url in urls - {"/openapi.json"}:
        assert client.get(url).status_code == 200, url


def test_methods_need_a_key(client):
    assert client.get("/v1/methods").status_code == 401


def test_methods_list_their_settings_with_the_bounds_a_job_is_checked_against(client):
    methods = {m["id"]: m for m in client.get("/v1/methods", headers=KEY).json()["data"]}
    assert {"rg", "graddiff", "ga", "esd"} <= set(methods)
    assert [m for m in methods.values() if m["default"]] == [methods["rg"]]
    rg = {s["name"]: s for s in methods["rg"]["settings"]}
    assert (rg["steps"]["type"], rg["steps"]["default"], rg["steps"]["minimum"], rg["steps"]["maximum"]) == ("integer", 100, 1, 10_000)
    assert (rg["learning_rate"]["minimum"], rg["learning_rate"]["maximum"]) == (1e-9, 1e-2)  # method's low, schema's high
    assert (rg["retain_weight"]["minimum"], rg["retain_weight"]["exclusive_minimum"]) == (0, True)
    assert rg["forget_loss_ceiling"]["nullable"] and "unet" in rg["trainable"]["choices"]
    assert (rg["forget_target"]["default"], rg["forget_target"]["choices"]) == ("ascent", ["ascent", "anchor"])
    assert (rg["retain_target"]["default"], rg["retain_target"]["choices"]) == ("noise", ["noise", "original", "guided"])
    assert rg["gradient_checkpointing"]["type"] == "boolean" and rg["steps"]["help"]
    esd = {s["name"]: s for s in methods["esd"]["settings"]}
    assert esd["steps"]["default"] == 200 and "negative_guidance" in esd and "retain_weight" not in esd


def test_a_setting_at_its_listed_maximum_is_accepted_and_past_it_refused(client):
    steps = next(s for s in client.get("/v1/methods", headers=KEY).json()["data"][0]["settings"] if s["name"] == "steps")
    body = {"base_model": {"name": "absent"}, "concepts": ["cat"]}
    too_many = client.post("/v1/jobs", headers=KEY, json=body | {"hyperparameters": {"steps": steps["maximum"] + 1}})
    assert too_many.status_code == 422 and too_many.json()["errors"][0]["field"] == "hyperparameters.steps"
    at_most = client.post("/v1/jobs", headers=KEY, json=body | {"hyperparameters": {"steps": steps["maximum"]}})
    assert [e["field"] for e in at_most.json()["errors"]] == ["base_model.name"]  # the steps passed; the model is unknown


def test_every_listed_choice_is_accepted(client):
    for method in client.get("/v1/methods", headers=KEY).json()["data"]:
        for setting in (s for s in method["settings"] if s["choices"]):
            for choice in setting["choices"]:
                body = {"base_model": {"name": "absent"}, "concepts": ["cat"], "method": method["id"],
                        "hyperparameters": {setting["name"]: choice}}
                answer = client.post("/v1/jobs", headers=KEY, json=body)
                assert [e["field"] for e in answer.json()["errors"]] == ["base_model.name"], (method["id"], choice, answer.text)
