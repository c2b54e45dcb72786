"""Slow clients cannot take the gateway down (issue 11).

A real uvicorn server (on PostgreSQL, and on SQLite) holds 100 open event streams and 30
downloads whose clients stopped reading; another tenant's requests must still be answered at
once. A streaming response that kept a pooled database connection, or a worker thread, while
it waits for its client would exhaust the pool (30 connections on PostgreSQL, 15 on SQLite)
or the thread pool (40).
"""

import shutil
import socket
import time

import httpx
import pytest

from tests.service.conftest import make_settings
from tests.service.service_helpers import ADMIN, KEY_A, KEY_B

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)]

STREAMS = 100
DOWNLOADS = 30
BIG_FILE = "big.bin"
BIG_FILE_BYTES = 16 << 20  # several times what the loopback socket buffers of one connection hold
CLIENT_RECEIVE_BUFFER = 16 << 10
OPEN_DEADLINE_S = 15.0
FAST_S = 1.0
ROUNDS = 10


@pytest.fixture
def settings(database_url, tmp_path):
    """The gateway's settings on `database_url`, polling event streams at the default pace."""
    return make_settings(tmp_path / "data", database_url=database_url).model_copy(update={"sse_poll_s": 0.5})


@pytest.fixture
def http(live_server):
    with httpx.Client(base_url=f"http://127.0.0.1:{live_server}", timeout=5) as client:
        yield client


@pytest.fixture
def big_model(http, tiny_pipeline, tmp_path) -> str:
    """A public base model `big` whose folder holds one file of BIG_FILE_BYTES."""
    folder = shutil.copytree(tiny_pipeline, tmp_path / "big")
    (folder / BIG_FILE).write_bytes(bytes(range(256)) * (BIG_FILE_BYTES // 256))
    body = {"name": "big", "source": {"path": str(folder)}, "visibility": "public"}
    response = http.post("/v1/models", json=body, headers=ADMIN, timeout=60)
    assert response.status_code == 201, response.text
    return "/v1/models/big/versions/1"


def open_request(port: int, path: str, headers: dict) -> socket.socket:
    """A connection that sent `GET path` and whose tiny receive buffer fills at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RECEIVE_BUFFER)
    sock.settimeout(OPEN_DEADLINE_S)
    sock.connect(("127.0.0.1", port))
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def status_line(sock: socket.socket, deadline: float) -> str:
    """The response's status line, read with the first few bytes; then this client reads no more."""
    try:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        return sock.recv(512).split(b"\r\n", 1)[0].decode()
    except TimeoutError:
        return "timeout"


def timed_get(http: httpx.Client, path: str, headers: dict) -> tuple[int | str, float]:
    started = time.monotonic()
    try:
        status = http.get(path, headers=headers).status_code
    except httpx.TimeoutException:
        status = "timeout"
    return status, time.monotonic() - started


def test_open_streams_and_stalled_downloads_leave_other_tenants_fast(live_server, http, big_model):
    streamed_job = http.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"]}, headers=KEY_A).json()["id"]
    own_job = http.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["dog"]}, headers=KEY_B).json()["id"]
    downloads = [f"{big_model}/archive" if i % 2 else f"{big_model}/files/{BIG_FILE}" for i in range(DOWNLOADS)]
    stream_headers = KEY_A | {"Accept": "text/event-stream"}
    sockets = [open_request(live_server, path, KEY_A) for path in downloads]
    sockets += [open_request(live_server, f"/v1/jobs/{streamed_job}/events", stream_headers) for _ in range(STREAMS)]
    try:
        deadline = time.monotonic() + OPEN_DEADLINE_S
        opened = [status_line(sock, deadline) for sock in sockets]
        answers = []
        for _ in range(ROUNDS):
            for path, headers in (("/v1/models", KEY_B), (f"/v1/jobs/{own_job}", KEY_B), ("/livez", {})):
                answers.append((path, *timed_get(http, path, headers)))
            if any(status != 200 for _, status, _ in answers):
                break
    finally:
        for sock in sockets:
            sock.close()
    not_open = [line for line in opened if not line.startswith("HTTP/1.1 200")]
    slow_or_failed = [a for a in answers if a[1] != 200 or a[2] >= FAST_S]
    assert not not_open and not slow_or_failed, (
        f"{len(not_open)} of {len(sockets)} streams/downloads not open: {sorted(set(not_open))}; "
        f"slow or failed answers to the other tenant: {slow_or_failed[:5]}"
    )
