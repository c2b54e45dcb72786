"""A version's local folder is named by its content: two tenants' `tiny` v1 are two folders."""

from __future__ import annotations

from service.models import Model, ModelVersion, VersionFile
from service.storage import LocalStorage
from workers.materialise import materialise


def a_version(storage, tmp_path, name: str, number: int, weights: bytes) -> ModelVersion:
    source = tmp_path / f"{name}-{number}-{weights.hex()}.bin"
    source.write_bytes(weights)
    sha256, size = storage.put_file(source)
    version = ModelVersion(model=Model(name=name), version=number)
    version.files.append(VersionFile(path="unet/diffusion_pytorch_model.safetensors", sha256=sha256, size=size))
    return version


def test_versions_with_one_name_and_number_but_other_files_get_folders_of_their_own(tmp_path):
    storage, cache = LocalStorage(tmp_path / "storage"), tmp_path / "cache"
    tenant_a = a_version(storage, tmp_path, "tiny", 1, b"tenant a's weights")
    tenant_b = a_version(storage, tmp_path, "tiny", 1, b"tenant b's weights")

    folder_a, folder_b = materialise(storage, tenant_a, cache), materialise(storage, tenant_b, cache)

    assert folder_a != folder_b
    assert (folder_a / "unet/diffusion_pytorch_model.safetensors").read_bytes() == b"tenant a's weights"
    assert (folder_b / "unet/diffusion_pytorch_model.safetensors").read_bytes() == b"tenant b's weights"
    same_files = a_version(storage, tmp_path, "other-name", 7, b"tenant a's weights")
    assert materialise(storage, same_files, cache) == folder_a  # the same content is fetched once
