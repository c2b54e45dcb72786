"""Two attempts at one job on one disk: a worker whose lease lapsed goes on writing until its
next safe point while the next attempt starts, and neither may lose the other's files (the
lost race: the stopping worker deleted the job's folder under the new owner's state save)."""

from __future__ import annotations

from types import SimpleNamespace

from workers.job_run import JobRun


def attempt(tmp_path, number: int) -> tuple[JobRun, SimpleNamespace]:
    return JobRun(SimpleNamespace(work_dir=tmp_path), "job_1", None, storage=None), SimpleNamespace(id="job_1", attempt=number)


def test_an_attempt_ending_leaves_the_next_attempts_folder_and_the_last_one_removes_the_jobs(tmp_path):
    (first, job_1), (second, job_2) = attempt(tmp_path, 1), attempt(tmp_path, 2)
    with second._attempt_folder(job_2) as second_folder:
        with first._attempt_folder(job_1) as first_folder:
            assert first_folder != second_folder
            for folder in first_folder, second_folder:
                (folder / "state").mkdir()
                (folder / "state" / "state.pt").write_bytes(b"saved")
        # the stopping attempt is gone; the running one still has its state
        assert not first_folder.exists()
        assert (second_folder / "state" / "state.pt").read_bytes() == b"saved"
    assert not (tmp_path / "job_1").exists()


def test_the_folder_goes_when_the_attempt_raises(tmp_path):
    run, job = attempt(tmp_path, 1)
    try:
        with run._attempt_folder(job) as folder:
            (folder / "out").mkdir()
            raise RuntimeError("the attempt failed")
    except RuntimeError:
        pass
    assert not (tmp_path / "job_1").exists()


def test_two_runs_of_the_same_attempt_number_get_folders_of_their_own(tmp_path):
    """A job handed back on SIGTERM keeps its attempt number; its next worker may start on the
    same disk before the stopping one has cleaned up."""
    (stopping, job), (next_run, same_job) = attempt(tmp_path, 1), attempt(tmp_path, 1)
    with next_run._attempt_folder(same_job) as next_folder:
        (next_folder / "state.pt").write_bytes(b"saved")
        with stopping._attempt_folder(job) as stopping_folder:
            assert stopping_folder != next_folder
        assert (next_folder / "state.pt").read_bytes() == b"saved"
    assert not (tmp_path / "job_1").exists()
