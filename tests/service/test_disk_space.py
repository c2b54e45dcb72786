"""A gateway on a full disk says so: `/readyz` names `disk` below LETHE_MIN_FREE_BYTES, and a
request whose database write meets a full disk answers 503 `no_space`, not "the database is
not answering". The full disk is a real, full tmpfs."""

from __future__ import annotations

from tests.service.conftest import make_settings
from tests.service.service_helpers import KEY_A, start_gateway
from tests.workers.test_failure_classes import fill, small_disk  # noqa: F401  (the fixture)

GOOD = {"base_model": {"name": "tiny"}, "concepts": ["cat"]}


def test_readyz_names_the_disk_when_free_space_is_below_the_threshold(tmp_path, tiny_pipeline):
    settings = make_settings(tmp_path / "data", min_free_bytes=1 << 62)  # more than any disk has
    client = start_gateway(settings, tiny_pipeline)

    response = client.get("/readyz")

    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == ["disk"] and "disk" in problem["detail"]
    message = problem["errors"][0]["message"]
    assert "the data folder has" in message and "the storage folder has" in message
    assert "LETHE_MIN_FREE_BYTES" in message and str(tmp_path) not in message  # /readyz needs no key: no path


def test_readyz_is_ready_above_the_threshold_or_without_one(tmp_path, tiny_pipeline):
    for threshold in (1 << 20, 0):
        client = start_gateway(make_settings(tmp_path / f"data-{threshold}", min_free_bytes=threshold), tiny_pipeline)
        response = client.get("/readyz")
        assert response.status_code == 200 and response.json()["checks"]["disk"] == "ok", response.text


def test_a_full_disk_under_the_database_answers_503_saying_so(small_disk, tiny_pipeline):  # noqa: F811
    settings = make_settings(small_disk / "data", model_roots=str(tiny_pipeline.parent.parent))
    client = start_gateway(settings, tiny_pipeline)
    assert client.post("/v1/jobs", json=GOOD, headers=KEY_A).status_code == 202
    fill(small_disk)

    refused = client.post("/v1/jobs", json=GOOD | {"seed": 1}, headers=KEY_A)

    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["type"] == "urn:lethe:problem:no_space" and "disk is full" in problem["detail"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "disk" in [e["field"] for e in ready.json()["errors"]]
