"""Webhooks in the gateway and the job store: the subscription's checks, a delivery row written by
every transaction that ends a job (and only for the events subscribed), the atomic claim, the
backoff, and GET /v1/jobs/{id}/deliveries."""

import time

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from service import jobs, webhooks
from service.jobs import JobSpec
from service.models import Job, WebhookDelivery
from service.settings import Settings
from tests.service.conftest import make_settings
from tests.service.service_helpers import KEY_A, KEY_B, broker_messages

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes
HOOK = {"url": "http://127.0.0.1:9/hook"}


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path / "data", webhook_secret=SECRET, webhook_allow_private=True)


def submit(client, webhook, headers=KEY_A):
    return client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"], "webhook": webhook},
                       headers=headers)


def test_a_job_records_its_subscription_with_all_events_by_default(client):
    response = submit(client, HOOK)
    assert response.status_code == 202, response.text
    job = client.get(f"/v1/jobs/{response.json()['id']}", headers=KEY_A).json()
    assert job["webhook"] == {"url": HOOK["url"], "events": ["succeeded", "failed", "cancelled"]}


BAD_WEBHOOKS = [
    ({"url": "ftp://example.com/hook"}, "webhook.url", "http or https"),
    ({"url": "https://user:pw@example.com/hook"}, "webhook.url", "credentials"),
    ({"url": "https:///no-host"}, "webhook.url", "no host"),
    ({"url": "https://example.com/" + "a" * 2048}, "webhook.url", "2048"),
    ({"url": "https://example.com/\nx"}, "webhook.url", "control"),
    ({"url": HOOK["url"], "events": []}, "webhook.events", ""),
    ({"url": HOOK["url"], "events": ["failed", "failed"]}, "webhook.events", "twice"),
    ({"url": HOOK["url"], "events": ["running"]}, "webhook.events", ""),
    ({"url": HOOK["url"], "secret": "x"}, "webhook.secret", ""),
]


@pytest.mark.parametrize(("webhook", "field", "words"), BAD_WEBHOOKS)
def test_a_bad_webhook_is_refused_naming_its_field_and_nothing_is_stored(client, settings, store, webhook, field, words):
    response = submit(client, webhook)
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["field"].startswith(field) and words in error["message"] + response.json()["detail"]
    assert store.scalar(select(func.count()).select_from(Job)) == 0
    assert broker_messages(settings) == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/x", "http://10.1.2.3/x",
                                 "http://169.254.169.254/latest", "http://224.0.0.1/x", "http://[::1]/x",
                                 "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://192.168.0.1/x"])
def test_private_hosts_are_refused_unless_allowed(url):
    assert "non-public address" in webhooks.url_problem(url, allow_private=False)
    assert webhooks.url_problem(url, allow_private=True) is None


def test_a_public_address_is_taken():
    assert webhooks.url_problem("https://93.184.215.14/hook", allow_private=False) is None


def test_private_hosts_are_refused_at_submission_by_default(tmp_path, tiny_pipeline):
    from tests.service.service_helpers import start_gateway

    settings = make_settings(tmp_path / "data", webhook_secret=SECRET)
    with start_gateway(settings, tiny_pipeline) as client:
        response = submit(client, {"url": "http://localhost:8080/hook"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "webhook.url"


def test_without_a_secret_webhooks_are_refused_as_not_configured(tmp_path, tiny_pipeline, store):
    from tests.service.service_helpers import start_gateway

    settings = make_settings(tmp_path / "data", webhook_allow_private=True)
    with start_gateway(settings, tiny_pipeline) as client:
        response = submit(client, HOOK)
        assert submit(client, None).status_code == 202  # no webhook: fine
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "webhook"
    assert "not configured" in response.json()["detail"]


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_short", "whsec_not*base64*at*all*here*!!"])
def test_a_malformed_secret_is_refused_by_the_settings(tmp_path, secret):
    with pytest.raises(ValidationError, match="webhook secret"):
        Settings(data_dir=tmp_path, webhook_secret=secret)


def test_signed_headers_verify_with_the_reference_implementation():
    from standardwebhooks import Webhook

    secret = webhooks.new_secret()
    body = webhooks.payload("job.failed", 1767000000.0, {"id": "job_1"})
    headers = webhooks.signed_headers(secret, "msg_1", body, time.time())
    assert Webhook(secret).verify(body, headers) == {"type": "job.failed", "timestamp": "2025-12-29T09:20:00Z",
                                                     "data": {"id": "job_1"}}
    with pytest.raises(Exception):
        Webhook(webhooks.new_secret()).verify(body, headers)


# -- the job store: one delivery per ending, in the ending transaction ----------------------------


def queued(session, events=("succeeded", "failed", "cancelled")) -> str:
    spec = JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg",
                   webhook={"url": HOOK["url"], "events": list(events)})
    return jobs.create_job(session, "tenant-a", spec).id


def deliveries(session, job_id) -> list[str]:
    session.commit()
    return list(session.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == job_id)))


def test_every_ending_path_adds_one_delivery(session):
    cancelled_queued = queued(session)
    jobs.cancel(session, cancelled_queued)

    failed = queued(session)
    jobs.claim(session, failed, "w1")
    jobs.finish(session, failed, jobs.FAILED, error={"code": "internal", "message": "x"}, worker="w1")

    succeeded = queued(session)
    jobs.claim(session, succeeded, "w1")
    assert jobs.mark_succeeded(session, succeeded, "w1", {"model": "tiny", "version": 2})
    session.commit()

    lost, lost_cancelling = queued(session), queued(session)
    for job_id in (lost, lost_cancelling):
        jobs.claim(session, job_id, "w1")
    jobs.cancel(session, lost_cancelling)
    assert jobs.requeue_stale(session, older_than_s=-1, max_attempts=1) == {lost: jobs.FAILED,
                                                                          lost_cancelling: jobs.CANCELLED}
    assert deliveries(session, cancelled_queued) == ["job.cancelled"]
    assert deliveries(session, failed) == ["job.failed"]
    assert deliveries(session, succeeded) == ["job.succeeded"]
    assert deliveries(session, lost) == ["job.failed"]
    assert deliveries(session, lost_cancelling) == ["job.cancelled"]


def test_an_event_not_subscribed_adds_nothing_and_a_requeue_is_no_ending(session):
    job_id = queued(session, events=["cancelled"])
    jobs.claim(session, job_id, "w1")
    assert jobs.requeue_stale(session, older_than_s=-1, max_attempts=3) == {job_id: jobs.QUEUED}
    jobs.claim(session, job_id, "w1")
    assert jobs.mark_succeeded(session, job_id, "w1", {"model": "tiny", "version": 2})
    assert deliveries(session, job_id) == []


def test_a_rolled_back_ending_leaves_no_delivery(session):
    job_id = queued(session)
    jobs.claim(session, job_id, "w1")
    assert jobs.mark_succeeded(session, job_id, "w1", {"model": "tiny", "version": 2})
    session.rollback()  # the publish transaction failed: the job did not end, nothing to tell
    assert deliveries(session, job_id) == []


def test_a_delivery_is_claimed_by_one_worker_at_a_time(session, settings):
    job_id = queued(session)
    jobs.cancel(session, job_id)
    [delivery_id] = webhooks.due(session)
    delivery = webhooks.claim(session, delivery_id)
    assert delivery is not None and webhooks.claim(session, delivery_id) is None
    assert webhooks.due(session) == []
    assert webhooks.record_attempt(session, delivery, 0.0, 0.1, 500, None, settings) == webhooks.PENDING
    assert webhooks.claim(session, delivery_id) is None  # not due before its backoff has passed


def test_the_backoff_doubles_up_to_its_cap_and_gives_up_after_the_last_attempt(session, tmp_path):
    settings = make_settings(tmp_path, webhook_first_retry_s=1.0, webhook_max_retry_s=5.0, webhook_max_attempts=3)
    assert [webhooks.retry_wait(n, settings) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    job_id = queued(session)
    jobs.cancel(session, job_id)
    delivery = session.get(WebhookDelivery, webhooks.due(session)[0])
    statuses = []
    for _ in range(3):
        statuses.append(webhooks.record_attempt(session, delivery, 0.0, 0.1, None, "refused", settings))
        session.refresh(delivery)
    assert statuses == ["pending", "pending", "failed"]


def test_deliveries_route_shows_attempts_and_is_tenant_scoped(client, store, settings):
    job_id = submit(client, {"url": HOOK["url"], "events": ["cancelled"]}).json()["id"]
    assert client.get(f"/v1/jobs/{job_id}/deliveries", headers=KEY_A).json()["data"] == []
    client.post(f"/v1/jobs/{job_id}/cancel", headers=KEY_A)
    delivery = webhooks.claim(store, webhooks.due(store)[0])
    webhooks.record_attempt(store, delivery, 1767000000.0, 0.25, 503, None, settings)
    body = client.get(f"/v1/jobs/{job_id}/deliveries", headers=KEY_A).json()
    [shown] = body["data"]
    assert (shown["event"], shown["status"], shown["url"]) == ("job.cancelled", "pending", HOOK["url"])
    assert shown["attempts"] == [{"at": 1767000000.0, "duration_s": 0.25, "status_code": 503, "error": None}]
    assert client.get(f"/v1/jobs/{job_id}/deliveries", headers=KEY_B).status_code == 404
    assert client.get("/v1/jobs/job_nope/deliveries", headers=KEY_A).status_code == 404
