"""The service and the pipeline families: which folders registration takes (the library's check,
over HTTP), what a version says of its family and training, LoRA jobs' settings, and a LoRA
version's adapter files served like any other file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from diffusers import StableDiffusionPipeline

from service import registry
from service.jobs import JobSpec, create_job
from service.storage import open_storage
from tests.service.service_helpers import ADMIN, KEY_A, out_folder
from unlearning.methods.base import LORA_TARGETS, MethodConfig

ADAPTER = {"diffusers": "lora/pytorch_lora_weights.safetensors", "kohya": "lora/erase-cat_kohya.safetensors",
           "rank": 4, "alpha": 4, "target_modules": list(LORA_TARGETS)}
LORA_JOB = {"trainable": "lora", "lora_rank": 4, "lora_target_modules": ["to_q", "to_v"]}


@pytest.fixture(scope="module")
def sdxl_pipeline(tmp_path_factory) -> Path:
    from unlearning.tiny import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny-sdxl") / "sdxl", seed=0)


@pytest.fixture(scope="module")
def pickle_pipeline(tiny_pipeline, tmp_path_factory) -> Path:
    """The tiny pipeline with its weights saved as pickle (.bin) files only."""
    folder = tmp_path_factory.mktemp("pickle") / "sd"
    StableDiffusionPipeline.from_pretrained(tiny_pipeline).save_pretrained(folder, safe_serialization=False)
    return folder


def register(client, name: str, folder: Path):
    return client.post("/v1/models", json={"name": name, "source": {"path": str(folder)}}, headers=ADMIN)


def refusal(client, name: str, folder: Path) -> str:
    """The detail of a 422 naming source.path; nothing was registered."""
    answer = register(client, name, folder)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == ["source.path"]
    assert client.get(f"/v1/models/{name}/versions", headers=ADMIN).status_code == 404
    return answer.json()["detail"]


def stored_blobs(client) -> list[Path]:
    return sorted(p for p in Path(client.app.state.parts.settings.storage_url).rglob("*") if p.is_file())


def write_index(folder: Path, index: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


# -- registration ---------------------------------------------------------------------------------


def test_an_sdxl_folder_registers_as_family_sdxl(client, sdxl_pipeline):
    answer = register(client, "xl", sdxl_pipeline)
    assert answer.status_code == 201, answer.text
    version = answer.json()
    assert (version["family"], version["trainable"], version["adapter"]) == ("sdxl", None, None)
    assert {"text_encoder_2/model.safetensors", "tokenizer_2/tokenizer.json"} <= {f["path"] for f in version["files"]}


def test_the_sd_base_says_family_sd(client):
    version = client.get("/v1/models/tiny/versions/1", headers=KEY_A).json()
    assert (version["family"], version["trainable"], version["adapter"]) == ("sd", None, None)


@pytest.mark.parametrize("index", [
    {"_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"]},
    {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None],
     "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "requires_aesthetics_score": True},
], ids=["sd3", "sdxl-refiner"])
def test_a_pipeline_lethe_cannot_train_is_refused_naming_it(client, tmp_path, index):
    # Both names hold "StableDiffusion": the class, not a substring, decides.
    detail = refusal(client, "other", write_index(tmp_path / "model", index))
    assert index["_class_name"] in detail and "which Lethe cannot train" in detail
    assert "StableDiffusionXLPipeline" in detail and "StableDiffusionPipeline" in detail  # what it takes


def test_a_pickle_only_folder_is_refused_naming_its_files(client, pickle_pipeline, tmp_path):
    folder = shutil.copytree(pickle_pipeline, tmp_path / "sd")
    blobs_before = stored_blobs(client)
    detail = refusal(client, "pickled", folder)
    assert "unet/diffusion_pytorch_model.bin" in detail and "convert them to safetensors" in detail
    assert "allow_pickle" not in detail  # registration has no such opt-in: the message offers none
    assert stored_blobs(client) == blobs_before  # refused before any upload


def test_a_folder_missing_a_component_is_refused_naming_it(client, tiny_pipeline, tmp_path):
    folder = shutil.copytree(tiny_pipeline, tmp_path / "sd")
    shutil.rmtree(folder / "vae")
    assert "the vae/ folder" in refusal(client, "novae", folder)


def test_an_index_that_is_not_an_object_is_refused(client, tiny_pipeline, tmp_path):
    folder = shutil.copytree(tiny_pipeline, tmp_path / "sd")
    (folder / "model_index.json").write_text("[1, 2]")
    assert "is not a JSON object" in refusal(client, "list", folder)


# -- LoRA jobs ------------------------------------------------------------------------------------


def post_job(client, hyperparameters: dict):
    body = {"base_model": {"name": "tiny"}, "concepts": ["cat"], "hyperparameters": hyperparameters}
    return client.post("/v1/jobs", json=body, headers=KEY_A)


def test_a_lora_job_is_accepted_with_its_settings(client):
    answer = post_job(client, LORA_JOB)
    assert answer.status_code == 202, answer.text
    assert {k: answer.json()["hyperparameters"][k] for k in LORA_JOB} == LORA_JOB


@pytest.mark.parametrize("hyperparameters, field", [
    ({"trainable": "lora", "lora_rank": 0}, "hyperparameters.lora_rank"),
    ({"trainable": "lora", "lora_rank": MethodConfig.BOUNDS["lora_rank"][1] + 1}, "hyperparameters.lora_rank"),
    ({"trainable": "lora", "lora_rank": "8"}, "hyperparameters.lora_rank"),
    ({"trainable": "lora", "lora_target_modules": []}, "hyperparameters.lora_target_modules"),
    ({"trainable": "lora", "lora_target_modules": ["to q"]}, "hyperparameters.lora_target_modules[0]"),
    ({"trainable": "lora", "lora_target_modules": ["to_q", "to_q"]}, "hyperparameters.lora_target_modules"),
    ({"trainable": "lora", "lora_target_modules": ["to_k"] * (MethodConfig.MAX_TARGETS + 1)},
     "hyperparameters.lora_target_modules"),
    ({"trainable": "dora"}, "hyperparameters.trainable"),
])
def test_bad_lora_settings_are_refused_naming_the_field(client, hyperparameters, field):
    answer = post_job(client, hyperparameters)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]


def test_methods_list_lora_with_the_librarys_bounds(client):
    for method in client.get("/v1/methods", headers=KEY_A).json()["data"]:
        settings = {s["name"]: s for s in method["settings"]}
        assert "lora" in settings["trainable"]["choices"], method["id"]
        rank = settings["lora_rank"]
        assert (rank["minimum"], rank["maximum"]) == MethodConfig.BOUNDS["lora_rank"]
        assert settings["lora_target_modules"]["type"] == "array"


# -- a LoRA version -------------------------------------------------------------------------------


def lora_out_folder(tiny_pipeline: Path, target: Path) -> Path:
    """A LoRA erasure's out folder as the library writes it: the adapter under lora/, its manifest record."""
    folder = out_folder(tiny_pipeline, target)
    (folder / "lora").mkdir()
    (folder / ADAPTER["diffusers"]).write_bytes(b"diffusers adapter")
    (folder / ADAPTER["kohya"]).write_bytes(b"kohya adapter")
    manifest = {"family": "sd", "config": {"trainable": "lora", "lora_rank": 4}, "lora": ADAPTER | {"tensors": 8}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_lora_version_lists_its_adapter_and_serves_its_files(client, settings, store, tiny_pipeline, tmp_path):
    job = create_job(store, "tenant-a", JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg",
                                                hyperparameters=LORA_JOB))
    folder = lora_out_folder(tiny_pipeline, tmp_path / "out")
    registry.publish_version(store, open_storage(settings), "tiny", 1, job.id, folder, ["cat"], "rg")

    version = client.get("/v1/models/tiny/versions/2", headers=KEY_A).json()
    assert (version["family"], version["trainable"], version["adapter"]) == ("sd", "lora", ADAPTER)
    for path in (ADAPTER["diffusers"], ADAPTER["kohya"]):
        served = client.get(f"/v1/models/tiny/versions/2/files/{path}", headers=KEY_A)
        assert served.status_code == 200 and served.content == (folder / path).read_bytes()
        assert served.headers["etag"] == f'"{next(f["sha256"] for f in version["files"] if f["path"] == path)}"'
    ranged = client.get(f"/v1/models/tiny/versions/2/files/{ADAPTER['kohya']}", headers=KEY_A | {"Range": "bytes=6-"})
    assert ranged.status_code == 206 and ranged.content == b"adapter"
    # The newest version in the model list carries the same fields.
    newest = client.get("/v1/models", headers=KEY_A).json()["data"][0]["newest_version"]
    assert newest["adapter"] == ADAPTER and newest["trainable"] == "lora"


def test_a_version_without_a_manifest_record_says_null(client, settings, store, tiny_pipeline, tmp_path):
    job = create_job(store, "tenant-a", JobSpec(base_model="tiny", base_version=1, concepts=["cat"], method="rg"))
    folder = out_folder(tiny_pipeline, tmp_path / "out")  # a manifest without family, config or lora
    registry.publish_version(store, open_storage(settings), "tiny", 1, job.id, folder, ["cat"], "rg")
    version = client.get("/v1/models/tiny/versions/2", headers=KEY_A).json()
    assert (version["family"], version["trainable"], version["adapter"]) == (None, None, None)


def test_the_gateway_still_imports_no_torch_when_it_registers(tmp_path, sdxl_pipeline):
    """Registration runs the library's folder check in the gateway: it must not pull torch in."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from service.db import migrate\n"
        "from service.settings import Settings\n"
        f"settings = Settings(data_dir={str(tmp_path / 'data')!r}, api_keys='k:t:admin', model_roots={str(sdxl_pipeline.parent)!r})\n"
        "migrate(settings.database_url)\n"
        "client = TestClient(create_app(settings))\n"
        f"body = {{'name': 'xl', 'source': {{'path': {str(sdxl_pipeline)!r}}}}}\n"
        "answer = client.post('/v1/models', json=body, headers={'Authorization': 'Bearer k'})\n"
        "assert answer.status_code == 201, answer.text\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
