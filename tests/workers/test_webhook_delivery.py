"""A real `lethe worker` posts a job's webhook to a real receiver on loopback, signed per Standard
Webhooks (checked with the `standardwebhooks` package's own `Webhook.verify`), soon after the
job ends; a receiver that is down, then answers 500, gets it once it is back; an event the job
did not subscribe to is never posted; `lethe serve` delivers through its own worker."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook

from service import jobs, webhooks
from service.api.present import job_public
from tests.workers.conftest import API_KEY, make_deployment
from tests.workers.worker_harness import free_port, start_http, start_worker, wait_until

SECRET = webhooks.new_secret()
HOOK_SETTINGS = {"webhook_secret": SECRET, "webhook_allow_private": True, "webhook_poll_s": 0.2,
                 "webhook_first_retry_s": 0.5, "webhook_max_retry_s": 2.0}


class Receiver:
    """An HTTP server on a loopback port that records each request (verified) and answers `status`."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/hook"
        self.received: list[dict] = []  # {"at", "headers", "body", "status"}
        self.answers: list[int] = []  # the next answers; 200 once they run out
        self._server = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.received.append({"at": time.time(), "headers": dict(self.headers), "body": body,
                                          "status": status})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[dict]:
        return [r for r in self.received if r["status"] == 200]


@pytest.fixture
def receiver():
    receiver = Receiver(free_port())
    yield receiver
    receiver.stop()


def start_hook_worker(deployment):
    """A `lethe worker` of the deployment, given the secret (Deployment.env shows secrets masked)."""
    env = deployment.env() | {"LETHE_WEBHOOK_SECRET": SECRET}
    return start_worker(env, deployment.settings.data_dir / "worker.log")


def deliveries(deployment, job_id):
    with deployment.sessions() as session:
        return webhooks.list_deliveries(session, job_id)


def recorded(deployment, job_id):
    """The job's one delivery and its attempts, once the sender has recorded it delivered (it
    records the answer just after the receiver has sent it)."""
    def done():
        [(delivery, attempts)] = deliveries(deployment, job_id)
        return delivery.status == "delivered" and (delivery, attempts)

    return wait_until(done, 10, f"the delivery of {job_id} recorded", every_s=0.05)


def verified(request: dict) -> dict:
    return Webhook(SECRET).verify(request["body"], request["headers"])


@pytest.mark.slow
def test_a_finished_job_is_posted_within_two_seconds_and_only_for_its_events(tmp_path, tiny_base, receiver, workers):
    deployment = make_deployment(tmp_path / "data", "", "filesystem://", **HOOK_SETTINGS)
    deployment.register_base(tiny_base)
    receiver.start()
    told = deployment.submit(["cat"], webhook={"url": receiver.url, "events": ["succeeded", "failed", "cancelled"]})
    not_told = deployment.submit(["dog"], webhook={"url": receiver.url, "events": ["cancelled"]})
    workers.append(start_hook_worker(deployment))

    for job_id in (told, not_told):
        wait_until(lambda: deployment.job(job_id).status in jobs.TERMINAL, 120, f"job {job_id} to end", every_s=0.1)
    job = deployment.job(told)
    assert job.status == "succeeded"
    [request] = wait_until(receiver.delivered, 10, "the webhook post", every_s=0.05)
    print(f"posted {request['at'] - job.finished_at:.2f} s after the job ended")
    assert request["at"] - job.finished_at < 2.0

    body = verified(request)  # raises unless signed with the server's secret
    assert body == {"type": "job.succeeded", "timestamp": body["timestamp"],
                    "data": job_public(job).model_dump(mode="json")}
    assert body["data"]["result"] == {"model": "tiny", "version": 2}
    delivery, attempts = recorded(deployment, told)
    assert request["headers"]["webhook-id"] == delivery.id and delivery.status == "delivered"
    assert [(a.status_code, a.error) for a in attempts] == [(200, None)]

    time.sleep(1.0)  # a few rounds of the sender: nothing for the job that wanted only `cancelled`
    assert deployment.job(not_told).status == "succeeded"
    assert deliveries(deployment, not_told) == [] and len(receiver.received) == 1


@pytest.mark.slow
def test_a_receiver_that_is_down_then_fails_gets_the_post_once_it_is_back(distributed, receiver, workers):
    deployment = distributed
    deployment.settings = deployment.settings.model_copy(update=HOOK_SETTINGS)
    job_id = deployment.submit(["cat"], publish=False, webhook={"url": receiver.url, "events": ["cancelled"]})
    with deployment.sessions() as session:
        jobs.cancel(session, job_id)  # ends it: its delivery is due, and the receiver is not there
    workers.append(start_hook_worker(deployment))

    def failed_attempts():
        [(_, attempts)] = deliveries(deployment, job_id)
        return len(attempts) >= 2 and attempts

    attempts = wait_until(failed_attempts, 30, "two refused attempts", every_s=0.2)
    assert all(a.status_code is None and "ConnectError" in a.error for a in attempts)
    assert attempts[1].started_at - attempts[0].started_at >= 0.5  # the backoff

    receiver.answers = [500]  # back, but failing once
    receiver.start()
    back = time.time()
    [request] = wait_until(receiver.delivered, 60, "the post once the receiver is back", every_s=0.1)
    assert request["at"] - back < 60
    assert verified(request)["type"] == "job.cancelled"
    assert [r["status"] for r in receiver.received] == [500, 200]
    assert len({r["headers"]["webhook-id"] for r in receiver.received}) == 1  # one delivery, tried again
    delivery, attempts = recorded(deployment, job_id)
    assert [a.status_code for a in attempts][-2:] == [500, 200] and all(a.duration_s < 5 for a in attempts)


@pytest.mark.slow
def test_lethe_serve_delivers_through_its_own_worker(embedded, receiver, workers):
    deployment = embedded
    deployment.settings = deployment.settings.model_copy(update=HOOK_SETTINGS)
    serve, url = start_http("serve", deployment.env() | {"LETHE_WEBHOOK_SECRET": SECRET},
                            deployment.settings.data_dir / "serve.log")
    workers.append(serve)
    receiver.start()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    body = {"base_model": {"name": "tiny"}, "concepts": ["cat"], "hyperparameters": {"steps": 1},
            "webhook": {"url": receiver.url, "events": ["cancelled"]}}
    created = httpx.post(f"{url}/v1/jobs", json=body, headers=auth, timeout=10)
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    assert httpx.post(f"{url}/v1/jobs/{job_id}/cancel", headers=auth, timeout=10).status_code == 200

    [request] = wait_until(receiver.delivered, 60, "the post from serve's worker", every_s=0.1)
    assert verified(request)["data"]["id"] == job_id
    recorded(deployment, job_id)
    shown = httpx.get(f"{url}/v1/jobs/{job_id}/deliveries", headers=auth, timeout=10).json()["data"]
    assert [(d["event"], d["status"], [a["status_code"] for a in d["attempts"]]) for d in shown] == [
        ("job.cancelled", "delivered", [200])]


def test_a_worker_without_a_secret_starts_no_sender(tmp_path):
    from service.settings import Settings
    from workers.webhook_delivery import WebhookSender

    sender = WebhookSender(Settings(data_dir=tmp_path), sessions=None)
    sender.start()
    assert not sender._thread.is_alive()
