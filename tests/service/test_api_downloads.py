"""Downloads: files with Range and ETag, path traversal, the tar archive, the delta, tenants."""

import hashlib
import io
import tarfile

import pytest

from service import registry
from service.storage import open_storage
from tests.service.service_helpers import KEY_A, KEY_B, UNET, out_folder

V1 = "/v1/models/tiny/versions/1"
V2 = "/v1/models/tiny/versions/2"


@pytest.fixture(scope="module")
def gateway(shared_gateway, tiny_pipeline, tmp_path_factory):
    """The shared gateway with version 2 of `tiny` published by a job of tenant-a."""
    client, settings, store = shared_gateway
    job = client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"]}, headers=KEY_A).json()
    folder = out_folder(tiny_pipeline, tmp_path_factory.mktemp("out") / "v2", unet_bytes=bytes(range(256)) * 40)
    registry.publish_version(store, open_storage(settings), "tiny", 1, job["id"], folder, ["cat"], "rg")
    return client, tiny_pipeline, folder


def test_version_objects(gateway):
    client, tiny, _ = gateway
    v2 = client.get(V2, headers=KEY_A).json()
    assert (v2["object"], v2["version"], v2["parent"], v2["status"], v2["concepts_erased"]) == ("model.version", 2, 1, "ready", ["cat"])
    assert v2["evaluation"] == {"forget_clip": 0.1}
    assert [v["version"] for v in client.get("/v1/models/tiny/versions", headers=KEY_A).json()["data"]] == [2, 1]
    assert [v["version"] for v in client.get("/v1/models/tiny/versions", headers=KEY_B).json()["data"]] == [1]
    models = client.get("/v1/models", headers=KEY_A).json()["data"]
    assert [(m["name"], m["newest_version"]["version"]) for m in models] == [("tiny", 2)]


def test_whole_file_with_strong_etag(gateway):
    client, _, folder = gateway
    data = (folder / UNET).read_bytes()
    response = client.get(f"{V2}/files/{UNET}", headers=KEY_A)
    assert response.status_code == 200 and response.content == data
    assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.headers["accept-ranges"] == "bytes" and int(response.headers["content-length"]) == len(data)


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [("bytes=0-0", 0, 1), ("bytes=10-99", 10, 100), ("bytes=100-", 100, None), ("bytes=-16", -16, None),
     ("bytes=5000-99999", 5000, None)],
)  # fmt: skip
def test_ranges(gateway, header, start, end):
    client, _, folder = gateway
    data = (folder / UNET).read_bytes()
    response = client.get(f"{V2}/files/{UNET}", headers=KEY_A | {"Range": header})
    expected = data[start:end]
    assert response.status_code == 206 and response.content == expected
    first = start % len(data)
    assert response.headers["content-range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
def test_unsatisfiable_range(gateway, header):
    client, _, folder = gateway
    response = client.get(f"{V2}/files/{UNET}", headers=KEY_A | {"Range": header})
    assert response.status_code == 416 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["content-range"] == f"bytes */{(folder / UNET).stat().st_size}"


def test_conditional_requests(gateway):
    client, _, folder = gateway
    etag = client.get(f"{V2}/files/{UNET}", headers=KEY_A).headers["etag"]
    assert client.get(f"{V2}/files/{UNET}", headers=KEY_A | {"If-None-Match": etag}).status_code == 304
    assert client.get(f"{V2}/files/{UNET}", headers=KEY_A | {"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    assert client.get(f"{V2}/files/{UNET}", headers=KEY_A | {"If-None-Match": '"other"'}).status_code == 200
    resume = KEY_A | {"Range": "bytes=100-", "If-Range": etag}
    assert client.get(f"{V2}/files/{UNET}", headers=resume).status_code == 206
    stale = KEY_A | {"Range": "bytes=100-", "If-Range": '"stale"'}
    response = client.get(f"{V2}/files/{UNET}", headers=stale)
    assert response.status_code == 200 and response.content == (folder / UNET).read_bytes()


@pytest.mark.parametrize(
    "path",
    # (httpx normalises a literal `a/../b` before sending, so the dots are also sent encoded)
    ["..%2F..%2F..%2Fetc%2Fpasswd", "unet%2F..%2Fmodel_index.json", "%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd",
     "unet", "nope.bin", "unet%2F.%2Fconfig.json", "..%5C..%5Cwindows"],
)  # fmt: skip
def test_path_traversal_and_unknown_files_are_404(gateway, path):
    client = gateway[0]
    response = client.get(f"{V2}/files/{path}", headers=KEY_A)
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert "root:" not in response.text


def test_another_tenant_cannot_see_or_download_a_version(gateway):
    client = gateway[0]
    for path in (V2, f"{V2}/files/{UNET}", f"{V2}/archive", f"{V2}/delta"):
        assert client.get(path, headers=KEY_B).status_code == 404
    assert client.get(f"{V1}/files/model_index.json", headers=KEY_B).status_code == 200  # the shared base


def test_delta(gateway):
    client, _, folder = gateway
    response = client.get(f"{V2}/delta", headers=KEY_A)
    assert response.status_code == 200 and response.content == (folder / "delta.safetensors").read_bytes()
    assert client.get(f"{V2}/delta", headers=KEY_A | {"Range": "bytes=0-3"}).content == response.content[:4]
    assert client.get(f"{V1}/delta", headers=KEY_A).status_code == 404


def test_archive_is_a_loadable_diffusers_folder_matching_the_version(gateway, tmp_path):
    client, tiny, _ = gateway
    response = client.get(f"{V1}/archive", headers=KEY_A)
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / "tiny-v1"
    listed = {f["path"]: f["sha256"] for f in client.get(V1, headers=KEY_A).json()["files"]}
    on_disk = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == listed

    from diffusers import StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    assert type(pipeline.unet).__name__ == "UNet2DConditionModel"


def test_v2_archive_lists_every_file_with_its_manifest(gateway, tmp_path):
    client = gateway[0]
    with tarfile.open(fileobj=io.BytesIO(client.get(f"{V2}/archive", headers=KEY_A).content)) as archive:
        names = sorted(m.name.removeprefix("tiny-v2/") for m in archive.getmembers())
    assert names == sorted(f["path"] for f in client.get(V2, headers=KEY_A).json()["files"])
    assert {"manifest.json", "delta.safetensors", "evaluation/metrics.json", UNET} <= set(names)
