"""A real `lethe serve` (gateway + one worker, embedded mode) on a free loopback port,
with the tiny pipeline registered as model `tiny`, for the client commands to talk to."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ADMIN_KEY = "client-test-admin-key"
OTHER_KEY = "client-test-other-key"
READY_TIMEOUT_S = 180


@dataclass
class LiveServer:
    url: str
    log: Path
    data_dir: Path

    def register(self, name: str, folder: Path) -> dict:
        answer = httpx.post(f"{self.url}/v1/models", json={"name": name, "source": {"path": str(folder)}},
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=120)
        assert answer.status_code == 201, answer.text
        return answer.json()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def lethe_executable() -> str:
    beside_python = Path(sys.executable).parent / "lethe"
    return str(beside_python) if beside_python.exists() else shutil.which("lethe")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(server: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"lethe serve exited with {server.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"lethe serve was not ready in {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)  # serve stops its worker child itself
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> LiveServer:
    from unlearning.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("client-server")
    model = build_tiny_pipeline(root / "tiny-model", seed=0)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = root / "data"
    env = {
        **os.environ,
        "LETHE_DATA_DIR": str(data_dir),
        "LETHE_API_KEYS": f"{ADMIN_KEY}:acme:admin,{OTHER_KEY}:other",
        "LETHE_SSE_POLL_S": "0.1",
        "LETHE_MODEL_ROOTS": str(tmp_path_factory.getbasetemp()),  # the tests' model folders lie under it
        "HF_HUB_OFFLINE": "1",
    }
    for name in ("LETHE_DATABASE_URL", "LETHE_BROKER_URL", "LETHE_STORAGE_URL"):
        env.pop(name, None)  # the embedded defaults
    log = root / "serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen([lethe_executable(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(server, url, log)
        live = LiveServer(url, log, data_dir)
        live.register("tiny", model)
        yield live
    finally:
        stop(server)
