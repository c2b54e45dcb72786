"""Registry: base registration, atomic and deduplicated publishing, idempotent per job."""

import json

import pytest
from sqlalchemy import func, select

from service import jobs, registry
from service.jobs import JobSpec
from service.models import Blob, ModelVersion
from tests.service.service_helpers import UNET, out_folder


@pytest.fixture
def base(session, storage, tiny_pipeline):
    return registry.register_base(session, storage, "tiny", tiny_pipeline)


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
        registry.register_base(session, storage, name, tmp_path / "nowhere")
    assert caught.value.field == field
    assert session.scalar(select(func.count()).select_from(ModelVersion)) == 0


def test_register_twice_is_refused(session, storage, base, tiny_pipeline):
    with pytest.raises(registry.NameTaken):
        registry.register_base(session, storage, "tiny", tiny_pipeline)


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


def test_versions_are_numbered_in_order_and_visible_to_their_tenant(session, storage, base, tiny_pipeline, tmp_path):
    spec = JobSpec(base_model="tiny", base_version=1, concepts=["dog"], method="rg")
    first = jobs.create_job(session, "tenant-a", spec)
    second = jobs.create_job(session, "tenant-b", spec)
    registry.publish_version(session, storage, "tiny", 1, first.id, out_folder(tiny_pipeline, tmp_path / "a", b"a"), ["dog"], "rg")
    registry.publish_version(session, storage, "tiny", 1, second.id, out_folder(tiny_pipeline, tmp_path / "b", b"b"), ["dog"], "rg")
    assert [v.version for v in registry.list_versions(session, "tiny", "tenant-a")] == [2, 1]
    assert [v.version for v in registry.list_versions(session, "tiny", "tenant-b")] == [3, 1]
    assert registry.get_version(session, "tiny", 3, "tenant-a") is None
    assert registry.get_version(session, "tiny", None, "tenant-b").version == 3
    assert [m.version for m in registry.list_models(session, "tenant-a")] == [2]
