"""A concept the base version has already erased is refused (409) unless the body says `force`."""

import pytest

from service import jobs, registry
from service.storage import open_storage
from tests.service.service_helpers import KEY_A, out_folder


@pytest.fixture
def v2_without_seven(client, settings, store, tiny_pipeline, tmp_path):
    """Version 2 of `tiny` (tenant-a's), published by a job that erased "Seven"."""
    job = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["Seven"]}, headers=KEY_A).json()
    folder = out_folder(tiny_pipeline, tmp_path / "v2")
    registry.publish_version(store, open_storage(settings), "tiny", 1, job["id"], folder, ["Seven"], "rg")
    return client


def erase(client, concepts, **extra):
    body = {"base_model": {"name": "tiny", "version": 2}, "concepts": concepts} | extra
    return client.post("/v1/jobs", json=body, headers=KEY_A)


def test_erasing_again_is_refused_with_409(v2_without_seven):
    response = erase(v2_without_seven, ["three", "  seVEN "])
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"] == "urn:lethe:problem:already_erased"
    assert problem["errors"][0]["field"] == "concepts" and "seVEN" in problem["errors"][0]["message"]
    assert "force" in problem["detail"]


def test_a_new_concept_on_the_same_base_is_accepted(v2_without_seven):
    assert erase(v2_without_seven, ["three"]).status_code == 202


def test_force_accepts_and_is_recorded_on_the_job(v2_without_seven, store):
    response = erase(v2_without_seven, ["seven"], force=True)
    assert response.status_code == 202, response.text
    events = jobs.list_events(store, response.json()["id"])
    assert any(event.data and event.data.get("force") is True for event in events)


def test_the_parent_without_the_concept_is_not_refused(v2_without_seven):
    body = {"base_model": {"name": "tiny", "version": 1}, "concepts": ["seven"]}
    assert v2_without_seven.post("/v1/jobs", json=body, headers=KEY_A).status_code == 202
