"""The distributed parts behind the same gateway: PostgreSQL, Redis broker, S3 storage."""

import hashlib

import pytest
import redis

from tests.service.conftest import make_settings
from tests.service.service_helpers import KEY_A, KEY_B, start_gateway

REDIS_DB = 13  # a database of its own, so no other test's worker takes these messages


@pytest.fixture
def distributed(tmp_path, postgres_url, moto_endpoint, tiny_pipeline):
    from tests.service.conftest import _empty_postgres, s3_client

    _empty_postgres(postgres_url)
    s3_client(moto_endpoint).create_bucket(Bucket="lethe-distributed")
    queue = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    queue.flushdb()
    settings = make_settings(
        tmp_path / "data", database_url=postgres_url, broker_url=f"redis://127.0.0.1:6379/{REDIS_DB}",
        storage_url="s3://lethe-distributed/versions", s3_endpoint_url=moto_endpoint,
        s3_access_key_id="test", s3_secret_access_key="test", metrics_token="metrics-token",
    )  # fmt: skip
    with start_gateway(settings, tiny_pipeline) as client:
        yield client, queue
    queue.flushdb()
    queue.close()


def test_jobs_and_downloads_on_postgres_redis_and_s3(distributed, tiny_pipeline):
    client, queue = distributed
    assert client.get("/readyz").status_code == 200
    response = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"]}, headers=KEY_A)
    assert response.status_code == 202
    assert queue.llen("gpu") == 1
    bad = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": []}, headers=KEY_A)
    assert bad.status_code == 422 and queue.llen("gpu") == 1  # nothing enqueued
    assert client.get(f"/v1/jobs/{response.json()['id']}", headers=KEY_B).status_code == 404
    metrics = client.get("/metrics", headers={"Authorization": "Bearer metrics-token"}).text
    assert 'lethe_jobs{status="queued"} 1.0' in metrics and "lethe_job_duration_seconds_count 0.0" in metrics

    files = client.get("/v1/models/tiny/versions/1", headers=KEY_A).json()["files"]
    for f in files:
        data = client.get(f"/v1/models/tiny/versions/1/files/{f['path']}", headers=KEY_A).content
        assert hashlib.sha256(data).hexdigest() == f["sha256"] == hashlib.sha256((tiny_pipeline / f["path"]).read_bytes()).hexdigest()
    unet = next(f for f in files if f["path"].startswith("unet/") and f["path"].endswith(".safetensors"))
    part = client.get(f"/v1/models/tiny/versions/1/files/{unet['path']}", headers=KEY_A | {"Range": "bytes=8-15"})
    assert part.status_code == 206 and part.content == (tiny_pipeline / unet["path"]).read_bytes()[8:16]
