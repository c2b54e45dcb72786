"""Jobs over HTTP: create, get, list, cancel, idempotency, events (JSON and SSE)."""

import json
import threading
import time

from sqlalchemy import func, select

from service import idempotency, jobs
from service.api.schemas import JobCreate
from service.models import Job
from tests.service.service_helpers import KEY_A, KEY_B, broker_messages, start_gateway

BODY = {"base_model": {"name": "tiny"}, "concepts": ["van gogh"]}


def post_job(client, body=BODY, headers=KEY_A, key=None):
    extra = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/jobs", json=body, headers=headers | extra)


def test_create_queues_the_job_and_publishes_one_message(client, settings, store):
    response = post_job(client, BODY | {"metadata": {"ticket": "T-1"}, "hyperparameters": {"steps": 5}})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["object"] == "unlearning.job" and job["id"].startswith("job_")
    assert (job["status"], job["base_model"], job["method"]) == ("queued", {"name": "tiny", "version": 1}, "rg")
    assert job["hyperparameters"] == {"steps": 5} and job["metadata"] == {"ticket": "T-1"}
    assert job["audit"] is None  # the library's default, quick
    assert broker_messages(settings) == 1
    assert jobs.get_job(store, job["id"]).status == "queued"
    assert client.get(f"/v1/jobs/{job['id']}", headers=KEY_A).json() == job


def test_the_audit_asked_for_is_stored_and_shown_apart_from_the_hyperparameters(client, store):
    for mode in ("quick", "full", "off"):
        job = post_job(client, BODY | {"audit": mode, "hyperparameters": {"steps": 5}}).json()
        assert (job["audit"], job["hyperparameters"]) == (mode, {"steps": 5})
        assert jobs.get_job(store, job["id"]).audit == mode


def test_a_failed_publish_leaves_the_job_queued(settings, tiny_pipeline, store):
    with start_gateway(settings, tiny_pipeline, broker=(lambda job_id: False, lambda: None)) as down:
        response = post_job(down)
    assert response.status_code == 202
    assert jobs.get_job(store, response.json()["id"]).status == "queued"


def test_another_tenant_sees_nothing(client):
    job_id = post_job(client).json()["id"]
    for method, path in [("GET", ""), ("POST", "/cancel"), ("GET", "/events")]:
        response = client.request(method, f"/v1/jobs/{job_id}{path}", headers=KEY_B)
        assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/jobs", headers=KEY_B).json()["data"] == []


def test_pagination(client):
    ids = [post_job(client, BODY | {"seed": i}).json()["id"] for i in range(5)]
    first = client.get("/v1/jobs?limit=2", headers=KEY_A).json()
    assert [j["id"] for j in first["data"]] == ids[::-1][:2] and first["has_more"]
    rest = client.get(f"/v1/jobs?limit=10&after={first['data'][-1]['id']}", headers=KEY_A).json()
    assert [j["id"] for j in rest["data"]] == ids[::-1][2:] and not rest["has_more"]
    client.post(f"/v1/jobs/{ids[1]}/cancel", headers=KEY_A)
    cancelled = client.get("/v1/jobs?status=cancelled", headers=KEY_A).json()
    assert [j["id"] for j in cancelled["data"]] == [ids[1]]
    assert client.get("/v1/jobs?limit=0", headers=KEY_A).json()["errors"][0]["field"] == "limit"


def test_cancel_a_queued_job_and_a_running_one(client, store):
    queued = post_job(client).json()["id"]
    response = client.post(f"/v1/jobs/{queued}/cancel", headers=KEY_A)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert jobs.claim(store, queued, "worker-1") is None  # a cancelled job never starts

    running = post_job(client).json()["id"]
    jobs.claim(store, running, "worker-1")
    assert client.post(f"/v1/jobs/{running}/cancel", headers=KEY_A).json()["status"] == "cancelling"
    assert jobs.heartbeat(store, running, "worker-1") == "cancelling"
    jobs.finish(store, running, "cancelled", worker="worker-1")
    finished = client.post(f"/v1/jobs/{running}/cancel", headers=KEY_A).json()
    assert finished["status"] == "cancelled" and finished["finished_at"] is not None


def test_idempotency_key_same_body_different_body_in_flight(client, settings, store):
    first = post_job(client, key="k-1")
    assert first.status_code == 202
    # Same body (other spacing and key order): the same job, 200, nothing new enqueued.
    same = client.post("/v1/jobs", content=json.dumps({"concepts": ["van gogh"], "base_model": {"name": "tiny"}}),
                       headers=KEY_A | {"Idempotency-Key": "k-1", "Content-Type": "application/json"})  # fmt: skip
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    different = post_job(client, BODY | {"concepts": ["monet"]}, key="k-1")
    assert different.status_code == 422 and different.json()["errors"][0]["field"] == "Idempotency-Key"
    # A request still in flight holds the key without a job yet.
    digest = idempotency.request_hash(JobCreate.model_validate(BODY))
    assert idempotency.reserve(store, "tenant-a", "k-2", digest, 60) is None
    in_flight = post_job(client, key="k-2")
    assert in_flight.status_code == 409 and in_flight.headers["content-type"] == "application/problem+json"
    # Keys are per tenant.
    assert post_job(client, headers=KEY_B, key="k-1").status_code == 202
    assert broker_messages(settings) == 2
    assert store.scalar(select(func.count()).select_from(Job)) == 2


def test_the_idempotency_hash_covers_only_what_the_caller_sent():
    class JobCreateLater(JobCreate):  # the server, once it has added an optional field
        priority: int = 0

    sent = {"base_model": {"name": "tiny"}, "concepts": [" van gogh "], "hyperparameters": {"steps": 5}}
    digest = idempotency.request_hash(JobCreate.model_validate(sent))
    assert digest == idempotency.request_hash(JobCreateLater.model_validate(sent))
    assert digest == idempotency.body_hash(sent | {"concepts": ["van gogh"]})  # validated: stripped
    assert digest != idempotency.request_hash(JobCreate.model_validate(sent | {"seed": 1}))


def test_progress_and_events_as_json(client, store):
    job_id = post_job(client).json()["id"]
    jobs.claim(store, job_id, "worker-1")
    jobs.set_progress(store, job_id, "unlearning", 40, 100)
    job = client.get(f"/v1/jobs/{job_id}", headers=KEY_A).json()
    assert job["status"] == "running" and job["progress"] == {"stage": "unlearning", "step": 40, "total_steps": 100}
    events = client.get(f"/v1/jobs/{job_id}/events", headers=KEY_A).json()
    assert events["object"] == "list" and [e["type"] for e in events["data"]] == ["message", "message", "progress"]
    later = client.get(f"/v1/jobs/{job_id}/events?after={events['data'][1]['id']}", headers=KEY_A).json()
    assert [e["type"] for e in later["data"]] == ["progress"]


def test_events_stream_live_and_end_with_the_job(client, settings):
    from service.db import make_engine, session_factory

    job_id = post_job(client).json()["id"]
    engine = make_engine(settings.database_url)

    def worker():
        with session_factory(engine)() as session:
            jobs.claim(session, job_id, "worker-1")
            for step in (1, 2):
                time.sleep(0.1)
                jobs.set_progress(session, job_id, "unlearning", step, 2)
            jobs.finish(session, job_id, "succeeded", result={"model": "tiny", "version": 2})

    thread = threading.Thread(target=worker)
    thread.start()
    started = time.monotonic()
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=KEY_A | {"Accept": "text/event-stream"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    thread.join()
    engine.dispose()
    assert time.monotonic() - started < 10
    blocks = [b for b in text.split("\n\n") if b.strip()]
    kinds = [line.split(": ", 1)[1] for b in blocks for line in b.splitlines() if line.startswith("event: ")]
    assert kinds[-1] == "end" and kinds.count("progress") == 2
    last = json.loads(blocks[-2].splitlines()[-1].removeprefix("data: "))
    assert last["data"]["status"] == "succeeded"


def test_the_largest_valid_body_is_accepted(client, store):
    body = dict(BODY, concepts=["c" * 200] * 10, preserve=["p"] * 50, seed=2**32 - 1,
                 hyperparameters={"steps": 10_000, "learning_rate": 1e-2, "batch_size": 64, "num_prompts": 10_000},
                 metadata={f"k{i}": "v" * 512 for i in range(16)})  # fmt: skip
    assert client.post("/v1/jobs", json=body, headers=KEY_A).status_code == 202


def test_concurrent_requests_with_one_idempotency_key_make_one_job(live_server, settings, store):
    import httpx

    barrier = threading.Barrier(6)
    statuses, ids = [], set()

    def request():
        with httpx.Client(base_url=f"http://127.0.0.1:{live_server}", timeout=30) as http:
            barrier.wait()
            response = http.post("/v1/jobs", json=BODY, headers=KEY_A | {"Idempotency-Key": "race"})
        statuses.append(response.status_code)
        if response.status_code in (200, 202):
            ids.add(response.json()["id"])

    threads = [threading.Thread(target=request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(202) == 1 and set(statuses) <= {200, 202, 409}, statuses
    assert len(ids) == 1 and store.scalar(select(func.count()).select_from(Job)) == 1
    assert broker_messages(settings) == 1
