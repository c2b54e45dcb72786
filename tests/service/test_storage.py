import hashlib
import os

import pytest


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_put_returns_sha256_and_size_and_reads_back(storage, tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # more than one read chunk
    sha256, size = storage.put_file(write(tmp_path / "f.bin", data))
    assert sha256 == hashlib.sha256(data).hexdigest() and size == len(data)
    assert storage.has(sha256)
    assert b"".join(storage.read(sha256)) == data


@pytest.mark.parametrize(("start", "end"), [(0, 1), (5, 100), (1 << 20, (1 << 20) + 3), (10, None), (99, 99)])
def test_byte_ranges(storage, tmp_path, start, end):
    data = os.urandom((1 << 20) + 50)
    sha256, _ = storage.put_file(write(tmp_path / "f.bin", data))
    assert b"".join(storage.read(sha256, start, end)) == data[start:end]


def test_same_content_is_stored_once(storage, tmp_path):
    first = storage.put_file(write(tmp_path / "a", b"same bytes"))
    second = storage.put_file(write(tmp_path / "b", b"same bytes"))
    assert first == second


def test_absent_blob(storage):
    assert not storage.has("0" * 64)
    storage.check()


def test_local_blob_is_never_half_written(tmp_path):
    from service.storage import LocalStorage, blob_key

    store = LocalStorage(tmp_path / "s")
    sha256, _ = store.put_file(write(tmp_path / "f", b"x" * 1000))
    folder = (tmp_path / "s" / blob_key(sha256)).parent
    assert [p.name for p in folder.iterdir()] == [sha256]  # no temp file left beside it


def test_a_missing_blob_fails_at_the_call_not_mid_stream(storage):
    from botocore.exceptions import ClientError

    with pytest.raises((FileNotFoundError, ClientError)):
        storage.read("0" * 64)
