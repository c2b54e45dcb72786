"""Faults seen by the gateway: no stack trace reaches the client; the gateway imports no torch."""

import subprocess
import sys

from fastapi.testclient import TestClient

from service.app import create_app
from service.storage import blob_key
from tests.service.conftest import make_settings
from tests.service.service_helpers import KEY_A


def test_database_away_is_a_503_problem_without_a_trace(tmp_path):
    settings = make_settings(tmp_path / "data", database_url="postgresql+psycopg://postgres@127.0.0.1:5432/lethe_gone")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for path in ("/v1/jobs", "/v1/jobs/job_x", "/v1/models"):
            response = client.get(path, headers=KEY_A)
            assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "5"
            assert "Traceback" not in response.text and "psycopg" not in response.text


def test_a_lost_blob_is_a_500_problem_without_a_trace(client, settings):
    files = client.get("/v1/models/tiny/versions/1", headers=KEY_A).json()["files"]
    lost = next(f for f in files if f["path"] == "model_index.json")
    (settings.data_dir / "storage" / blob_key(lost["sha256"])).unlink()
    response = client.get("/v1/models/tiny/versions/1/files/model_index.json", headers=KEY_A)
    assert response.status_code == 500 and response.json()["detail"] == "internal error"
    assert response.json()["errors"] == [] and "Traceback" not in response.text and "storage" not in response.text


def test_the_gateway_imports_no_torch(tmp_path):
    code = (
        "import sys\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        f"create_app(Settings(data_dir={str(tmp_path)!r}, api_keys='k:t'))\n"
        "import service.api.submit, service.api.routes.jobs\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
