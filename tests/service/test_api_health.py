"""Health, readiness naming the failing part, Prometheus metrics behind their token; a real uvicorn server."""

import http.client

import pytest

from service import jobs
from service.app import create_app
from tests.service.conftest import free_port, make_settings
from tests.service.service_helpers import KEY_A, start_gateway

METRICS = {"Authorization": "Bearer metrics-token"}


@pytest.fixture
def settings(tmp_path):
    """The gateway's settings, with a metrics token."""
    return make_settings(tmp_path / "data", metrics_token="metrics-token")


def test_livez_and_readyz(client):
    assert client.get("/livez").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "broker": "ok", "storage": "ok", "disk": "ok"}


def test_readyz_names_each_failing_part(tmp_path, moto_endpoint):
    settings = make_settings(
        tmp_path / "data",
        database_url="postgresql+psycopg://postgres@127.0.0.1:5432/lethe_no_such_database",
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        storage_url="s3://no-such-bucket/prefix",
        s3_endpoint_url=moto_endpoint,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["database", "broker", "storage"]
    # No key is needed here: nothing of the configuration (hosts, database and bucket names) is shown.
    assert not any(secret in response.text for secret in ("lethe_no_such_database", "no-such-bucket", "127.0.0.1"))


def test_metrics(client, store):
    job_id = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"]}, headers=KEY_A).json()["id"]
    client.get(f"/v1/jobs/{job_id}", headers=KEY_A)
    client.get("/v1/jobs/job_nope", headers=KEY_A)
    text = client.get("/metrics", headers=METRICS).text
    assert 'lethe_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"} 1.0' in text
    assert 'lethe_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0' in text
    assert "lethe_http_request_duration_seconds_bucket" in text
    assert 'lethe_jobs{status="queued"} 1.0' in text and "lethe_queue_depth 1.0" in text
    jobs.claim(store, job_id, "w")
    jobs.finish(store, job_id, "succeeded", worker="w")
    text = client.get("/metrics", headers=METRICS).text
    assert 'lethe_jobs{status="succeeded"} 1.0' in text and "lethe_queue_depth 0.0" in text
    assert "lethe_job_duration_seconds_count 1.0" in text
    assert 'lethe_job_duration_seconds_bucket{le="60.0"} 1.0' in text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic metrics-token"},
                                     KEY_A])  # fmt: skip
def test_metrics_need_their_token(client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert "lethe_" not in response.text


def test_without_a_metrics_token_there_are_no_metrics(tmp_path, tiny_pipeline):
    with start_gateway(make_settings(tmp_path / "data"), tiny_pipeline) as client:
        for headers in ({}, METRICS, {"Authorization": "Bearer "}):
            response = client.get("/metrics", headers=headers)
            assert response.status_code == 404, response.text
            assert response.json() == client.get("/no-such-route").json() | {"instance": "/metrics"}


def test_raw_traversal_over_a_real_server(live_server):
    for path in ("../../../../etc/passwd", "unet/../../../../etc/passwd", "./model_index.json"):
        connection = http.client.HTTPConnection("127.0.0.1", live_server, timeout=5)
        connection.request("GET", f"/v1/models/tiny/versions/1/files/{path}", headers=KEY_A)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 404 and b"root:" not in body, (path, body)
        connection.close()
