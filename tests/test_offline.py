import socket

import pytest


def test_non_loopback_connections_are_refused():
    with socket.socket() as s, pytest.raises(ConnectionRefusedError, match="offline"):
        s.connect(("192.0.2.1", 80))


def test_hub_is_offline():
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
