"""A LoRA erasure through the real `lethe serve`, as a user runs it: `lethe erase --set
trainable=lora`, the version's `adapter`, `lethe download --adapter` fetching only the adapter's
files (resuming, checking every sha256), and diffusers' `load_lora_weights` loading them on the
base to give the version's own UNet; `--delta` fetching only the delta and the manifest."""

from __future__ import annotations

import re

import httpx
import pytest
import torch
from safetensors.torch import load_file

from .conftest import ADMIN_KEY
from .test_client_commands import TINY, lethe, ok, sha256

pytestmark = pytest.mark.slow
MODEL = "tiny-lora"  # a model of its own: `tiny`'s version numbers belong to test_client_commands
LORA = ["--set", "trainable=lora", "--set", "lora_rank=4", "--set", "learning_rate=0.01"]


@pytest.fixture(scope="module")
def base(live_server, tmp_path_factory):
    """The tiny pipeline registered as MODEL (private to the admin's tenant, as `tiny` is)."""
    from unlearning.tiny import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path_factory.mktemp("lora-base") / "sd", seed=0)
    live_server.register(MODEL, folder)
    return folder


@pytest.fixture(scope="module")
def lora_version(live_server, base) -> dict:
    """`lethe erase MODEL "van gogh" --set trainable=lora ... --wait`: the version it made."""
    run = ok(lethe(live_server, "erase", MODEL, "van gogh", *TINY, *LORA, "--wait"), live_server)
    number = int(re.search(rf"succeeded: {MODEL} version (\d+)", run.stdout).group(1))
    assert f"lethe download {MODEL} {number} ./{MODEL}-v{number}-lora --adapter" in run.stdout, run.stdout
    answer = httpx.get(f"{live_server.url}/v1/models/{MODEL}/versions/{number}",
                       headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    return answer.raise_for_status().json()


def files_in(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_the_version_records_its_family_training_and_adapter(lora_version):
    adapter = lora_version["adapter"]
    assert (lora_version["family"], lora_version["trainable"]) == ("sd", "lora")
    assert adapter["diffusers"] == "lora/pytorch_lora_weights.safetensors"
    assert adapter["kohya"] == "lora/erase-van-gogh_kohya.safetensors"
    assert (adapter["rank"], adapter["alpha"]) == (4, 4)
    assert {adapter["diffusers"], adapter["kohya"]} <= {f["path"] for f in lora_version["files"]}


def test_download_adapter_fetches_only_the_adapter_and_it_loads_on_the_base(live_server, base, lora_version, tmp_path):
    from diffusers import StableDiffusionPipeline

    number, adapter = str(lora_version["version"]), lora_version["adapter"]
    listed = {f["path"]: f for f in lora_version["files"]}
    kohya = listed[adapter["kohya"]]
    whole = httpx.get(f"{live_server.url}/v1/models/{MODEL}/versions/{number}/files/{kohya['path']}",
                      headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).content
    part = tmp_path / "adapter" / (kohya["path"] + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(whole[:100])  # an interrupted download: resumed, as any version file

    run = ok(lethe(live_server, "download", MODEL, number, str(tmp_path / "adapter"), "--adapter"))

    assert files_in(tmp_path / "adapter") == {adapter["diffusers"], adapter["kohya"]}
    assert re.search(rf"{re.escape(kohya['path'])}\s.*resumed at byte 100$", run.stdout, re.M), run.stdout
    assert "(its LoRA adapter): 2 files" in run.stdout and "load_lora_weights" in run.stdout
    for path in files_in(tmp_path / "adapter"):
        assert sha256(tmp_path / "adapter" / path) == listed[path]["sha256"], path

    # The adapter on the base, fused, gives the version's UNet: the tensors of its delta.
    ok(lethe(live_server, "download", MODEL, number, str(tmp_path / "delta"), "--delta"))
    delta = load_file(tmp_path / "delta" / "delta.safetensors")
    pipe = StableDiffusionPipeline.from_pretrained(base)
    before = {name: t.clone() for name, t in pipe.unet.state_dict().items() if name in delta}
    pipe.load_lora_weights(tmp_path / "adapter" / "lora")
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.unet.state_dict()
    assert delta and all(re.search(r"\.(to_q|to_k|to_v|to_out\.0)\.weight$", name) for name in delta)
    assert max((delta[name] - before[name]).abs().max().item() for name in delta) > 1e-3  # far above the tolerance
    for name, tensor in delta.items():
        assert torch.allclose(fused[name], tensor, rtol=1e-5, atol=1e-6), name


def test_download_delta_fetches_only_the_delta_and_the_manifest(live_server, lora_version, tmp_path):
    run = ok(lethe(live_server, "download", MODEL, str(lora_version["version"]), str(tmp_path), "--delta"))
    assert files_in(tmp_path) == {"delta.safetensors", "manifest.json"}
    assert "(its delta): 2 files" in run.stdout


@pytest.mark.parametrize("option, message", [("--adapter", "has no LoRA adapter"), ("--delta", "has no delta")])
def test_a_version_without_that_part_is_one_clear_line(live_server, base, tmp_path, option, message):
    run = lethe(live_server, "download", MODEL, "1", str(tmp_path / "out"), option)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip() == f"lethe: version 1 of {MODEL!r} {message}" + (
        " (only a job with trainable lora makes one)" if option == "--adapter" else " (it has no parent)")
    assert not (tmp_path / "out").exists()


def test_adapter_and_delta_exclude_each_other(live_server, tmp_path):
    run = lethe(live_server, "download", MODEL, "1", str(tmp_path), "--adapter", "--delta")
    assert run.returncode == 2 and "not allowed with argument" in run.stderr
