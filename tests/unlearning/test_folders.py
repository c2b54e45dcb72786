"""Which folders are taken: fp16 variant weights, safetensors only unless pickle is allowed,
the pipeline classes of the supported families, and a clear refusal of everything else."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

import unlearning
from unlearning.folders import check_pipeline_folder
from unlearning.pipeline import load_pipeline

UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
TINY = {"steps": 2, "num_prompts": 4, "batch_size": 2, "generation_steps": 2, "generation_batch_size": 8,
        "eval_prompts": 2, "learning_rate": 1e-3, "forget_loss_ceiling": None}


def resaved(base, folder, **save_options):
    StableDiffusionPipeline.from_pretrained(base).save_pretrained(folder, **save_options)
    return folder


def weight_files(folder) -> list[str]:
    suffixes = (".safetensors", ".bin")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.name.endswith(suffixes))


@pytest.fixture(scope="module")
def fp16_base(tiny_base, tmp_path_factory):
    """Only fp16 variant files, in fp16, as many hub folders ship them."""
    folder = tmp_path_factory.mktemp("fp16") / "sd"
    StableDiffusionPipeline.from_pretrained(tiny_base).to(torch.float16).save_pretrained(folder, variant="fp16")
    return folder


@pytest.fixture(scope="module")
def pickle_base(tiny_base, tmp_path_factory):
    return resaved(tiny_base, tmp_path_factory.mktemp("pickle") / "sd", safe_serialization=False)


def test_an_fp16_variant_folder_erases_in_fp32(fp16_base, tmp_path):
    assert weight_files(fp16_base) == ["text_encoder/model.fp16.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
                                       "vae/diffusion_pytorch_model.fp16.safetensors"]
    pipe = load_pipeline(fp16_base, "cpu")
    assert {p.dtype for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters()} == {torch.float32}
    result = unlearning.erase(fp16_base, ["van gogh"], tmp_path / "out", hyperparameters=TINY)
    delta, unet = load_file(result.out / "delta.safetensors"), load_file(result.out / UNET_FILE)
    assert delta and all(t.dtype == torch.float32 for t in unet.values())
    stock = StableDiffusionPipeline.from_pretrained(result.out, variant="fp16", dtype=torch.float32)  # as its base loads
    assert stock("a dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0].size == (16, 16)
    # ...and as it is: the unchanged components also have plain fp32 weights, the variant files kept beside them.
    assert weight_files(result.out) == ["delta.safetensors", "text_encoder/model.fp16.safetensors", "text_encoder/model.safetensors",
                                        UNET_FILE, "vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors"]
    stock = StableDiffusionPipeline.from_pretrained(result.out)
    assert {p.dtype for m in (stock.unet, stock.vae, stock.text_encoder) for p in m.parameters()} == {torch.float32}
    assert stock("a dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0].size == (16, 16)
    fp16 = load_file(fp16_base / "vae/diffusion_pytorch_model.fp16.safetensors")
    plain = load_file(result.out / "vae/diffusion_pytorch_model.safetensors")
    assert plain.keys() == fp16.keys() and all(torch.equal(plain[k], fp16[k].float()) for k in fp16)


def test_a_pickle_folder_is_refused_naming_its_files_and_the_opt_in(pickle_base, tmp_path):
    assert "unet/diffusion_pytorch_model.bin" in weight_files(pickle_base)
    with pytest.raises(unlearning.InvalidInput) as error:
        unlearning.erase(pickle_base, ["van gogh"], tmp_path / "out", hyperparameters=TINY)
    assert error.value.field == "base"
    for part in ("unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin", "allow_pickle=True", "--allow-pickle"):
        assert part in error.value.message
    assert list(tmp_path.iterdir()) == []


def test_the_cli_refuses_a_pickle_folder_in_one_line_and_its_flag_lets_it_through(pickle_base, tmp_path):
    def cli(*extra):
        command = [sys.executable, "-m", "unlearning", "erase", "--base", str(pickle_base), "--concept", "x",
                   "--out", str(tmp_path / "o"), "--steps", "0", *extra]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    refused = cli()
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().startswith("error: base: ") and "--allow-pickle" in refused.stderr
    allowed = cli("--allow-pickle")  # past the folder check, stopped by the next mistake
    assert allowed.returncode == 2 and allowed.stderr.strip() == "error: hyperparameters.steps: must be between 1 and 100000, got 0"


def test_a_pickle_folder_loads_and_erases_with_the_opt_in(tiny_base, pickle_base, tmp_path):
    pipe = load_pipeline(pickle_base, "cpu", allow_pickle=True)
    original = load_file(tiny_base / UNET_FILE)
    assert all(torch.equal(p, original[n]) for n, p in pipe.unet.state_dict().items())
    result = unlearning.erase(pickle_base, ["van gogh"], tmp_path / "out", hyperparameters=TINY, allow_pickle=True)
    assert load_file(result.out / "delta.safetensors")
    StableDiffusionPipeline.from_pretrained(result.out)


def test_pickle_files_beside_safetensors_are_never_read(tiny_base, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_base, folder)
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"not a pickle: reading this fails")
    pipe = load_pipeline(folder, "cpu")
    assert pipe.unet.dtype == torch.float32


def test_a_component_without_weights_is_named(tiny_base, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_base, folder)
    (folder / UNET_FILE).unlink()
    with pytest.raises(unlearning.NotAPipeline) as error:
        check_pipeline_folder(folder)
    assert error.value.missing == ["weights in unet/ (.safetensors files)"]


def write_index(folder, index: dict):
    folder.mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.mark.parametrize(
    "index",
    [
        {"_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"]},
        {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"]},
        {"_class_name": "StableDiffusionXLImg2ImgPipeline", "text_encoder": [None, None],  # the SDXL refiner
         "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"], "requires_aesthetics_score": True},
    ],
    ids=["sd3", "flux", "sdxl-refiner"],
)
def test_an_unsupported_pipeline_class_is_refused_naming_it_and_what_is_supported(tmp_path, index):
    folder = write_index(tmp_path / "model", index)
    with pytest.raises(unlearning.InvalidInput) as error:
        check_pipeline_folder(folder)
    assert error.value.field == "base"
    assert index["_class_name"] in error.value.message
    assert "StableDiffusionPipeline (Stable Diffusion 1.x and 2.x)" in error.value.message
    assert "StableDiffusionXLPipeline (Stable Diffusion XL (base))" in error.value.message


def test_an_sdxl_folder_needs_both_text_encoders(sdxl_base, tmp_path):
    folder = tmp_path / "sdxl"
    shutil.copytree(sdxl_base, folder)
    index = json.loads((folder / "model_index.json").read_text())
    index["text_encoder_2"] = [None, None]
    (folder / "model_index.json").write_text(json.dumps(index))
    shutil.rmtree(folder / "tokenizer_2")
    with pytest.raises(unlearning.NotAPipeline) as error:
        check_pipeline_folder(folder)
    assert error.value.missing == ["text_encoder_2 in model_index.json", "the tokenizer_2/ folder"]


def test_a_folder_without_a_pipeline_class_is_named(tmp_path):
    with pytest.raises(unlearning.NotAPipeline) as error:
        check_pipeline_folder(write_index(tmp_path / "model", {"unet": ["diffusers", "UNet2DConditionModel"]}))
    assert error.value.missing == ["_class_name in model_index.json"]


def test_the_folder_check_imports_no_torch(sdxl_base, fp16_base):
    code = ("import sys; from unlearning.folders import inspect_pipeline_folder as inspect; "
            f"print(inspect({str(sdxl_base)!r}).family.name, inspect({str(fp16_base)!r}).variant, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["sdxl", "fp16", "False"]
