import hashlib
import os
import subprocess
import sys

import pytest

from service.auth import Caller, authenticate, parse_api_keys
from service.settings import Settings


def test_defaults_live_under_the_data_dir(tmp_path):
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'lethe.db'}"
    assert settings.storage_url == str(tmp_path / "storage")
    assert settings.broker_url == "filesystem://"


def test_settings_come_from_the_environment_of_the_process(tmp_path):
    # In a child process, so this test's own environment stays as it is.
    code = "from service.settings import Settings; s = Settings(); print(s.data_dir, s.max_attempts)"
    env = os.environ | {"LETHE_DATA_DIR": str(tmp_path), "LETHE_MAX_ATTEMPTS": "7"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(tmp_path), "7"]


def test_keys_are_kept_hashed():
    hashed = hashlib.sha256(b"secret-2").hexdigest()
    keys = parse_api_keys(f"secret-1:acme, sha256-{hashed}:globex:admin")
    assert "secret-1" not in keys and "secret-1" not in repr(keys)
    assert authenticate(keys, "Bearer secret-1") == Caller("acme")
    assert authenticate(keys, "Bearer secret-2") == Caller("globex", admin=True)
    assert authenticate(keys, "Bearer nope") is None
    assert authenticate(keys, "Basic secret-1") is None
    assert authenticate(keys, None) is None


@pytest.mark.parametrize("text", ["key", "key:", ":tenant", "key:tenant:root", "a:b:admin:x"])
def test_bad_key_entries_are_refused_by_position(text):
    with pytest.raises(ValueError, match="entry 1"):
        parse_api_keys(text)
