"""What one caller may take (service/limits.py): request rates per tenant and, for requests
without a valid key, per client address; queued jobs per tenant; the cost of one job.
Real gateways on SQLite, counts in memory and in the real Redis."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from service.app import create_app
from service.limits import JobCost, job_cost
from service.settings import Settings
from tests.service.conftest import free_port, make_settings
from tests.service.service_helpers import KEY_A, KEY_B, start_gateway

GOOD = {"base_model": {"name": "tiny"}, "concepts": ["cat"]}
WRONG = {"Authorization": "Bearer not-a-key"}
SHARED_REDIS = "redis://127.0.0.1:6379/3"  # below the databases the worker tests take (4-15)


def gateway(tmp_path, tiny_pipeline, **changes) -> TestClient:
    return start_gateway(make_settings(tmp_path / "data", **changes), tiny_pipeline)


def assert_too_many(response, field: str, code: str) -> dict:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"urn:lethe:problem:{code}"
    assert [e["field"] for e in problem["errors"]] == [field]
    return problem


def assert_rate_headers(response, limit: int, window_s: int) -> None:
    headers = response.headers
    assert headers["ratelimit-limit"] == str(limit) and headers["ratelimit-remaining"] == "0"
    assert 1 <= int(headers["retry-after"]) <= window_s
    assert headers["ratelimit-reset"] == headers["retry-after"]


# -- request rates -------------------------------------------------------------------------------


def test_a_tenant_past_its_rate_gets_429_and_other_tenants_do_not(tmp_path, tiny_pipeline):
    client = gateway(tmp_path, tiny_pipeline, rate_limit="3/minute")

    assert [client.get("/v1/jobs", headers=KEY_A).status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get("/v1/jobs", headers=KEY_A)

    problem = assert_too_many(refused, "rate_limit", "rate_limited")
    assert "3 per 1 minute" in problem["detail"]
    assert_rate_headers(refused, limit=3, window_s=60)
    assert client.post("/v1/jobs", json=GOOD, headers=KEY_A).status_code == 429  # every /v1 route
    assert client.get("/v1/jobs", headers=KEY_B).status_code == 200
    assert client.get("/livez").status_code == 200 and client.get("/readyz").status_code == 200


def test_gateways_on_one_redis_share_the_counts(tmp_path, tiny_pipeline):
    tenant = f"limits-{secrets.token_hex(4)}"  # its own counters in the shared Redis
    keys = SecretStr(f"key-r:{tenant},key-admin:ops:admin")
    settings = make_settings(tmp_path / "data", rate_limit="4/minute", broker_url=SHARED_REDIS)
    settings = settings.model_copy(update={"api_keys": keys})
    first = start_gateway(settings, tiny_pipeline)
    second = TestClient(create_app(settings))
    key = {"Authorization": "Bearer key-r"}

    answers = [client.get("/v1/models", headers=key).status_code for client in (first, second, first, second)]

    assert answers == [200, 200, 200, 200]
    assert_too_many(second.get("/v1/models", headers=key), "rate_limit", "rate_limited")
    assert_too_many(first.get("/v1/models", headers=key), "rate_limit", "rate_limited")


def test_a_count_store_that_does_not_answer_lets_requests_through(tmp_path, tiny_pipeline, caplog):
    client = gateway(tmp_path, tiny_pipeline, rate_limit="1/minute", rate_limit_storage_url=f"redis://127.0.0.1:{free_port()}/0")

    assert [client.get("/v1/jobs", headers=KEY_A).status_code for _ in range(3)] == [200, 200, 200]
    assert "rate limits not applied: the count store does not answer" in caplog.text


def test_an_address_past_its_failed_keys_is_refused_even_with_a_right_key(tmp_path, tiny_pipeline):
    client = gateway(tmp_path, tiny_pipeline, auth_failure_limit="3/minute")

    assert [client.get("/v1/jobs", headers=WRONG).status_code for _ in range(2)] == [401, 401]
    assert client.get("/v1/jobs").status_code == 401  # no key at all counts too
    refused = client.get("/v1/jobs", headers=WRONG)
    assert_too_many(refused, "Authorization", "rate_limited")
    assert_rate_headers(refused, limit=3, window_s=60)
    # A right key from the same address is refused as well: no answer tells a right guess apart.
    assert_too_many(client.get("/v1/jobs", headers=KEY_A), "Authorization", "rate_limited")
    elsewhere = TestClient(client.app, client=("192.0.2.7", 40000))
    assert elsewhere.get("/v1/jobs", headers=KEY_A).status_code == 200
    assert elsewhere.get("/v1/jobs", headers=WRONG).status_code == 401


# -- jobs ----------------------------------------------------------------------------------------


def test_queued_jobs_per_tenant_are_limited_at_submission(tmp_path, tiny_pipeline):
    client = gateway(tmp_path, tiny_pipeline, max_queued_jobs=2)
    first = client.post("/v1/jobs", json=GOOD, headers=KEY_A | {"Idempotency-Key": "k1"})
    assert first.status_code == 202
    assert client.post("/v1/jobs", json=GOOD | {"seed": 1}, headers=KEY_A).status_code == 202

    refused = client.post("/v1/jobs", json=GOOD | {"seed": 2}, headers=KEY_A | {"Idempotency-Key": "k3"})

    problem = assert_too_many(refused, "max_queued_jobs", "too_many_queued_jobs")
    assert "2 queued jobs" in problem["detail"]
    assert len(client.get("/v1/jobs", headers=KEY_A).json()["data"]) == 2  # nothing written
    replay = client.post("/v1/jobs", json=GOOD, headers=KEY_A | {"Idempotency-Key": "k1"})
    assert (replay.status_code, replay.json()["id"]) == (200, first.json()["id"])  # a replay adds no job
    assert client.post("/v1/jobs", json=GOOD, headers=KEY_B).status_code == 202  # another tenant's queue
    client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=KEY_A)
    # The refused request's Idempotency-Key was released: it may be used again.
    assert client.post("/v1/jobs", json=GOOD | {"seed": 2}, headers=KEY_A | {"Idempotency-Key": "k3"}).status_code == 202


def test_a_job_costlier_than_the_tenant_may_submit_is_refused_naming_cost_and_limit(tmp_path, tiny_pipeline):
    client = gateway(tmp_path, tiny_pipeline, max_job_cost=50_000, job_cost_limits="tenant-b:200000")
    costly = GOOD | {"hyperparameters": {"num_prompts": 2000}}  # 1,600 + 100,000 + 800

    refused = client.post("/v1/jobs", json=costly, headers=KEY_A)

    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"] == "urn:lethe:problem:job_too_costly"
    assert problem["errors"][0]["field"] == "hyperparameters"
    assert "102,400 UNet passes" in problem["detail"] and "limit of 50,000" in problem["detail"]
    assert client.get("/v1/jobs", headers=KEY_A).json()["data"] == []
    assert client.post("/v1/jobs", json=GOOD, headers=KEY_A).status_code == 202  # the defaults: 42,400
    assert client.post("/v1/jobs", json=costly, headers=KEY_B).status_code == 202  # tenant-b's own limit


def test_the_default_limit_refuses_the_probes_job(tmp_path, tiny_pipeline):
    client = gateway(tmp_path, tiny_pipeline)
    huge = GOOD | {"hyperparameters": {"steps": 10_000, "num_prompts": 10_000, "generation_steps": 1000}}

    refused = client.post("/v1/jobs", json=huge, headers=KEY_A)

    assert refused.status_code == 422 and "20,192,000 UNet passes" in refused.json()["detail"], refused.text


@pytest.mark.parametrize(
    "method, hyperparameters, cost",
    [
        ("rg", {}, JobCost(training=100 * 8 * 2, data=800 * 25 * 2, evaluation=8 * 2 * 25 * 2)),
        ("graddiff", {"steps": 10, "batch_size": 2}, JobCost(10 * 2 * 2, 800 * 25 * 2, 800)),
        ("ga", {"num_prompts": 4, "generation_steps": 5, "eval_prompts": 0}, JobCost(100 * 8, 4 * 5, 0)),
        ("esd", {}, JobCost(training=200 * 1 * 3, data=200 * 25, evaluation=800)),  # its own defaults, 2 frozen passes
        ("rg", {"forget_target": "anchor"}, JobCost(100 * 8 * 3, 800 * 25 * 2, 800)),  # e*(c_retain)
        ("rg", {"forget_target": "anchor", "anchor_guidance": 0.5, "retain_target": "original"},
         JobCost(100 * 8 * 5, 800 * 25 * 2, 800)),  # e*(c_retain) and e*(c_forget), and the retain's e*
        ("graddiff", {"retain_target": "guided"},  # the empty prompt trained beside the pair; e* of both
         JobCost(100 * 8 * (3 + 2), 800 * 25 * 2, 800)),
        ("ga", {"forget_target": "anchor", "anchor_guidance": 1.0}, JobCost(100 * 8 * 3, 800 * 25 * 2, 800)),
        ("rg", {"adversarial_steps": 50, "adversarial_every": 30},  # the robust mode: 4 searches of 50 steps
         JobCost(training=100 * 8 * 2 + 100 * 8 + 4 * 50 * 8, data=800 * 25 * 2, evaluation=800)),
        ("rg", {"forget_target": "anchor", "anchor_guidance": 0.5, "adversarial_steps": 50, "adversarial_every": 30},
         JobCost(100 * 8 * (2 + 2 + 3) + 100 * 8 * 2 + 4 * 50 * 8, 800 * 25 * 2, 800)),  # rows and empty prompt held
        ("rg", {"stop_when_erased": 0.0},  # 11 erasure checks (one before training) of 32 images
         JobCost(training=100 * 8 * 2, data=800 * 25 * 2, evaluation=800 + 11 * 32 * 25)),
        ("ga", {"stop_when_erased": 0.0, "num_prompts": 4, "generation_steps": 5, "eval_prompts": 0},
         JobCost(100 * 8, 4 * 5 * 2, 11 * 32 * 5)),  # the check fits on retain images that ga never trains on
    ],
)
def test_the_cost_of_a_job_fills_in_the_methods_defaults(method, hyperparameters, cost):
    assert job_cost(method, hyperparameters) == cost


def test_the_erasure_checks_cost_grows_with_the_concepts():
    checks = job_cost("rg", {"stop_when_erased": 0.0, "stop_check_every": 50}, concepts=3).evaluation - 800
    assert checks == 3 * 32 * 25 * 3  # a check before training and after steps 50 and 100, for each concept


@pytest.mark.parametrize(
    "changes",
    [{"rate_limit": "lots"}, {"auth_failure_limit": "3 per fortnight"}, {"job_cost_limits": "tenant-a"},
     {"job_cost_limits": "tenant-a:1e6"}, {"max_queued_jobs": -1}],
)  # fmt: skip
def test_a_bad_limit_setting_is_refused_at_start(changes):
    with pytest.raises(ValidationError):
        Settings(**changes)


def test_empty_or_zero_limits_are_off(tmp_path, tiny_pipeline):
    client = gateway(tmp_path, tiny_pipeline, rate_limit="", auth_failure_limit="", max_queued_jobs=0, max_job_cost=0)
    huge = GOOD | {"hyperparameters": {"steps": 10_000, "num_prompts": 10_000, "generation_steps": 1000}}

    assert client.post("/v1/jobs", json=huge, headers=KEY_A).status_code == 202
    assert {client.get("/v1/jobs", headers=WRONG).status_code for _ in range(40)} == {401}
