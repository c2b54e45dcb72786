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


# -- mutable objects (a job's resumable state) ---------------------------------------------------


def test_an_object_is_stored_replaced_read_and_deleted(storage, tmp_path):
    key = "jobs/job_0123abcd/state.pt"
    assert not storage.get_object(key, tmp_path / "absent.pt")
    assert not (tmp_path / "absent.pt").exists()

    storage.put_object(key, write(tmp_path / "first", b"step 5"))
    big = b"step 10" * 1_300_000  # over 8 MiB: a multipart upload on S3
    storage.put_object(key, write(tmp_path / "second", big))  # replaces it whole
    assert storage.get_object(key, tmp_path / "out" / "state.pt")
    assert (tmp_path / "out" / "state.pt").read_bytes() == big
    assert not storage.get_object("jobs/job_other/state.pt", tmp_path / "other.pt")

    storage.delete_object(key)
    storage.delete_object(key)  # absent: no error
    assert not storage.get_object(key, tmp_path / "again.pt")


def test_a_download_replaces_the_destination_whole(storage, tmp_path):
    here = tmp_path / "here"
    here.mkdir()
    storage.put_object("jobs/j/state.pt", write(here / "new", b"new state"))
    dest = write(here / "state.pt", b"an old, longer local state")
    assert storage.get_object("jobs/j/state.pt", dest)
    assert dest.read_bytes() == b"new state"
    assert sorted(p.name for p in here.iterdir()) == ["new", "state.pt"]  # no temp file left


def test_objects_and_blobs_do_not_mix(storage, tmp_path):
    sha256, _ = storage.put_file(write(tmp_path / "blob", b"blob bytes"))
    storage.put_object(f"jobs/{sha256}", write(tmp_path / "object", b"object bytes"))
    assert b"".join(storage.read(sha256)) == b"blob bytes"
    with pytest.raises(ValueError, match="blobs/"):
        storage.put_object(f"blobs/{sha256[:2]}/{sha256}", tmp_path / "object")


@pytest.mark.parametrize("key", ["../escape", "jobs/../../etc/passwd", "/jobs/x", "jobs//x", "jobs/x/", "jobs/.hidden",
                                 "", "jobs\\x", "jobs/x y", "blobs", "a" * 513])
def test_object_keys_are_checked_before_any_io(storage, tmp_path, key):
    here = tmp_path / "here"
    here.mkdir()
    source = write(here / "f", b"x")
    for call in (lambda: storage.put_object(key, source), lambda: storage.get_object(key, here / "out"),
                 lambda: storage.delete_object(key)):
        with pytest.raises(ValueError, match="object key"):
            call()
    assert [p.name for p in here.iterdir()] == ["f"]
    assert not (tmp_path / "escape").exists()


def test_local_objects_leave_no_temp_files_and_no_empty_folders(tmp_path):
    from service.storage import LocalStorage

    store = LocalStorage(tmp_path / "s")
    for content in (b"one", b"two"):
        store.put_object("jobs/job_1/state.pt", write(tmp_path / "f", content))
    store.put_object("jobs/job_2/state.pt", write(tmp_path / "f", b"other job"))
    assert [p.name for p in (tmp_path / "s" / "jobs" / "job_1").iterdir()] == ["state.pt"]

    store.delete_object("jobs/job_1/state.pt")
    assert [p.name for p in (tmp_path / "s" / "jobs").iterdir()] == ["job_2"]
    store.delete_object("jobs/job_2/state.pt")
    assert list((tmp_path / "s").iterdir()) == []


def test_a_failed_local_write_keeps_the_old_object(tmp_path):
    from service.storage import LocalStorage

    store = LocalStorage(tmp_path / "s")
    store.put_object("jobs/j/state.pt", write(tmp_path / "f", b"saved at step 5"))
    with pytest.raises(FileNotFoundError):
        store.put_object("jobs/j/state.pt", tmp_path / "missing")
    assert store.get_object("jobs/j/state.pt", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"saved at step 5"
    assert [p.name for p in (tmp_path / "s" / "jobs" / "j").iterdir()] == ["state.pt"]
