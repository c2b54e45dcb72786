"""Registry: base registration, atomic and deduplicated publishing, idempotent per job."""

import json

import pytest
from sqlalchemy import func, select, text, update

from service import jobs, registry
from service.db import make_engine, session_factory
from service.jobs import JobSpec
from service.models import Blob, Job, ModelVersion
from tests.service.service_helpers import UNET, out_folder


@pytest.fixture
def base(session, storage, tiny_pipeline):
    return registry.register_base(session, storage, "tiny", tiny_pipeline, owner="ops", visibility="public")


@pytest.fixture
def job(session, base):
    return jobs.create_job(session, "tenant-a", JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg"))


def test_register_base_stores_every_file(session, storage, base, tiny_pipeline):
    on_disk = sorted(p.relative_to(tiny_pipeline).as_posix() for p in tiny_pipeline.rglob("*") if p.is_file())
    assert [f.path for f in base.files] == on_disk
    assert base.version == 1 and base.tenant is None and base.status == "ready"
    for f in base.files:
        assert b"".join(storage.read(f.sha256)) == (tiny_pipeline / f.path).read_bytes()


@pytest.mark.parametrize(("name", "field"), [("Bad Name", "name"), ("x" * 65, "name"), ("ok", "source.path")])
def test_register_rejects_bad_input(session, storage, tmp_path, name, field):
    with pytest.raises(registry.RegistryError) as caught:
        registry.register_base(session, storage, name, tmp_path / "nowhere", owner="ops", visibility="public")
    assert caught.value.field == field
    assert session.scalar(select(func.count()).select_from(ModelVersion)) == 0


def test_register_twice_is_refused(session, storage, base, tiny_pipeline):
    with pytest.raises(registry.NameTaken):
        registry.register_base(session, storage, "tiny", tiny_pipeline, owner="ops", visibility="public")


def test_publish_shares_unchanged_components_and_is_idempotent(session, storage, base, job, tiny_pipeline, tmp_path):
    folder = out_folder(tiny_pipeline, tmp_path / "out")
    blobs_before = session.scalar(select(func.count()).select_from(Blob))
    version = registry.publish_version(session, storage, "tiny", 1, job.id, folder, ["cat"], "rg")
    assert (version.version, version.parent, version.tenant, version.status) == (2, 1, "tenant-a", "ready")
    assert version.evaluation == {"forget_clip": 0.1}
    parent = {f.path: f.sha256 for f in base.files}
    child = {f.path: f.sha256 for f in version.files}
    for shared in ("text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors", "tokenizer/tokenizer.json"):
        assert child[shared] == parent[shared]
    assert child[UNET] != parent[UNET]
    # New blobs: the UNet, the delta, the metrics, the manifest; everything else is shared.
    assert session.scalar(select(func.count()).select_from(Blob)) == blobs_before + 4
    manifest = json.loads(b"".join(storage.read(child["manifest.json"])))
    assert (manifest["version"], manifest["parent"], manifest["job_id"]) == (2, 1, job.id)

    again = registry.publish_version(session, storage, "tiny", 1, job.id, folder, ["cat"], "rg")
    assert again.id == version.id
    assert session.scalar(select(func.count()).select_from(ModelVersion)) == 2


class DiskFullAfter:
    """The real storage, until it runs out of space after `puts` files (disk full while publishing)."""

    def __init__(self, storage, puts):
        self.storage, self.left = storage, puts

    def put_file(self, path):
        if self.left == 0:
            raise OSError(28, "No space left on device")
        self.left -= 1
        return self.storage.put_file(path)


def test_failed_publish_leaves_no_visible_version(session, storage, base, job, tiny_pipeline, tmp_path):
    folder = out_folder(tiny_pipeline, tmp_path / "out")
    with pytest.raises(OSError, match="No space"):
        registry.publish_version(session, DiskFullAfter(storage, 5), "tiny", 1, job.id, folder, ["cat"], "rg")
    assert [v.version for v in registry.list_versions(session, "tiny", "tenant-a")] == [1]
    # The job can publish once the disk has room again.
    assert registry.publish_version(session, storage, "tiny", 1, job.id, folder, ["cat"], "rg").version == 2


def test_each_tenant_numbers_its_versions_and_sees_only_them(session, storage, base, tiny_pipeline, tmp_path):
    spec = JobSpec(base_model="tiny", base_version=1, concepts=["dog"], method="rg")
    first = jobs.create_job(session, "tenant-a", spec)
    second = jobs.create_job(session, "tenant-b", spec)
    registry.publish_version(session, storage, "tiny", 1, first.id, out_folder(tiny_pipeline, tmp_path / "a", b"a"), ["dog"], "rg")
    registry.publish_version(session, storage, "tiny", 1, second.id, out_folder(tiny_pipeline, tmp_path / "b", b"b"), ["dog"], "rg")
    assert [v.version for v in registry.list_versions(session, "tiny", "tenant-a")] == [2, 1]
    assert [v.version for v in registry.list_versions(session, "tiny", "tenant-b")] == [2, 1]
    assert registry.get_version(session, "tiny", 2, "tenant-a").job_id == first.id
    assert registry.get_version(session, "tiny", None, "tenant-b").job_id == second.id
    assert [(m.version, m.job_id) for m in registry.list_models(session, "tenant-a")] == [(2, first.id)]
    assert [(m.version, m.job_id) for m in registry.list_models(session, "tenant-c")] == [(1, None)]


class CallsBeforeEachPut:
    """The real storage, calling `hook()` before each file it stores (something happens mid-upload)."""

    def __init__(self, storage, hook):
        self.storage, self.hook = storage, hook

    def put_file(self, path):
        self.hook()
        return self.storage.put_file(path)


@pytest.fixture
def other_session(database_url):
    """A second connection: the gateway or another worker, acting while a publish uploads."""
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


def versions_of(session, job_id):
    return session.scalar(select(func.count()).select_from(ModelVersion).where(ModelVersion.job_id == job_id))


def test_no_transaction_is_open_while_files_are_uploaded(session, storage, base, job, tiny_pipeline, tmp_path):
    jobs.claim(session, job.id, "w1")
    in_transaction = []
    uploading = CallsBeforeEachPut(storage, lambda: in_transaction.append(session.in_transaction()))
    registry.publish_version(session, uploading, "tiny", 1, job.id, out_folder(tiny_pipeline, tmp_path / "out"),
                             ["cat"], "rg", worker="w1")
    assert len(in_transaction) > 5 and not any(in_transaction)


def test_publishing_inserts_the_version_and_ends_the_job_succeeded_in_one_commit(
    session, storage, base, job, tiny_pipeline, tmp_path, database_url
):
    jobs.claim(session, job.id, "w1")
    folder = out_folder(tiny_pipeline, tmp_path / "out")
    version = registry.publish_version(session, storage, "tiny", 1, job.id, folder, ["cat"], "rg", worker="w1")
    ended = jobs.get_job(session, job.id)
    assert (version.version, ended.status, ended.result) == (2, "succeeded", {"model": "tiny", "version": 2})
    assert jobs.list_events(session, job.id)[-1].data["status"] == "succeeded"
    if database_url.startswith("postgresql"):  # rows written by one transaction carry its id
        written_by = "SELECT xmin::text FROM {} WHERE {} = :job"
        job_xid = session.scalar(text(written_by.format("jobs", "id")), {"job": job.id})
        version_xid = session.scalar(text(written_by.format("model_versions", "job_id")), {"job": job.id})
        assert job_xid == version_xid

    # A retry (say the commit landed but its answer was lost) returns the same version.
    again = registry.publish_version(session, storage, "tiny", 1, job.id, folder, ["cat"], "rg", worker="w1")
    assert again.id == version.id and versions_of(session, job.id) == 1


def test_a_cancel_during_the_upload_wins_and_no_version_is_inserted(
    session, other_session, storage, base, job, tiny_pipeline, tmp_path
):
    jobs.claim(session, job.id, "w1")
    cancel_once = lambda: jobs.get_job(other_session, job.id).status == "running" and jobs.cancel(other_session, job.id)
    uploading = CallsBeforeEachPut(storage, cancel_once)
    folder = out_folder(tiny_pipeline, tmp_path / "out")
    assert registry.publish_version(session, uploading, "tiny", 1, job.id, folder, ["cat"], "rg", worker="w1") is None
    assert versions_of(session, job.id) == 0
    assert jobs.get_job(session, job.id).status == "cancelling"
    # What the worker does next: it ends the job as the user asked.
    assert jobs.finish(session, job.id, "cancelled", worker="w1") == "cancelled"
    assert [v.version for v in registry.list_versions(session, "tiny", "tenant-a")] == [1]


def test_a_lease_lost_during_the_upload_publishes_nothing(session, other_session, storage, base, job, tiny_pipeline, tmp_path):
    jobs.claim(session, job.id, "w1")

    def reconciler_gives_it_to_w2():
        if jobs.get_job(other_session, job.id).worker == "w1":
            other_session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=0))
            other_session.commit()
            assert jobs.requeue_stale(other_session, older_than_s=60, max_attempts=3) == {job.id: "queued"}
            assert jobs.claim(other_session, job.id, "w2") is not None

    uploading = CallsBeforeEachPut(storage, reconciler_gives_it_to_w2)
    folder = out_folder(tiny_pipeline, tmp_path / "out")
    assert registry.publish_version(session, uploading, "tiny", 1, job.id, folder, ["cat"], "rg", worker="w1") is None
    assert versions_of(session, job.id) == 0
    taken = jobs.get_job(session, job.id)
    assert (taken.status, taken.worker, taken.attempt) == ("running", "w2", 2)
    # The new lease holder publishes the one version of the job.
    assert registry.publish_version(session, storage, "tiny", 1, job.id, folder, ["cat"], "rg", worker="w2").version == 2
    assert versions_of(session, job.id) == 1 and jobs.get_job(session, job.id).status == "succeeded"
