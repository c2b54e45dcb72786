"""Suite-wide guards: the suite is offline by construction."""

from __future__ import annotations

import ipaddress
import os
import socket

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny models of the suite run fastest on one thread, and a 2-core machine running a
# worker subprocess beside pytest is oversubscribed (spinning OpenMP threads) otherwise.
# Subprocesses (CLI runs, Celery workers) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address) -> bool:
    if isinstance(address, (str, bytes)):  # a Unix socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded(real):
    def connect(self, address):
        if not _is_local(address):
            raise ConnectionRefusedError(f"the test suite is offline: refused connection to {address!r}")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True, scope="session")
def _offline():
    """Refuse every connection that does not stay on this machine."""
    socket.socket.connect = _guarded(_real_connect)
    socket.socket.connect_ex = _guarded(_real_connect_ex)
    yield
    socket.socket.connect, socket.socket.connect_ex = _real_connect, _real_connect_ex
