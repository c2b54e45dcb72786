"""LoRA erasure (`trainable: "lora"`): the loop trains a low-rank adapter instead of the UNet.

The adapter is diffusers' own peft integration (`unet.add_adapter(LoraConfig(...))`), so the
trainer's parameters are the adapter's A and B matrices and nothing else. Its A matrices are
drawn from generators seeded by (job seed, parameter name), B starts at zero (the UNet's
outputs are the base's until the first step), and alpha equals the rank (scale 1), which is
what the kohya format's `.alpha` records.

After the run the adapter is written twice, each by the libraries' own conversions: in
diffusers' format (`pipe.load_lora_weights(folder)`) and in the kohya single-file format that
AUTOMATIC1111 and ComfyUI load. Then it is fused into the UNet's weights and removed, so the
result folder is still a plain diffusers folder that stock `from_pretrained` loads.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import InvalidInput

ADAPTER = "default"  # peft's adapter name; no file records it
FOLDER = "lora"
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"  # the name load_lora_weights looks for
WRAPPABLE = (torch.nn.Linear, torch.nn.Conv2d)
TARGETS_FIELD = "hyperparameters.lora_target_modules"


def matches(module_name: str, target: str) -> bool:
    """peft's rule for a list of targets: the module's full name, or its last dotted parts."""
    return module_name == target or module_name.endswith("." + target)


def target_layers(unet, targets) -> dict[str, torch.nn.Module]:
    """The layers the adapter wraps, by name; InvalidInput names a target that matches none,
    or one that matches a layer LoRA cannot wrap."""
    layers = {}
    for target in targets:
        found = {name: m for name, m in unet.named_modules() if matches(name, target)}
        if not found:
            raise InvalidInput(TARGETS_FIELD, f"{target!r} matches no layer of this UNet; "
                                              "for example to_q, to_k, to_v, to_out.0, proj_in, ff.net.2")
        for name, module in found.items():
            if not isinstance(module, WRAPPABLE):
                raise InvalidInput(TARGETS_FIELD, f"{target!r} matches {name} ({type(module).__name__}), "
                                                  "which is not a linear or convolution layer")
        layers.update(found)
    return layers


def check(unet, config) -> None:
    """Refuse targets this UNet lacks, before any work (a no-op unless `trainable` is 'lora')."""
    if config.trainable == "lora":
        target_layers(unet, config.lora_target_modules)


def parent_weights(unet, config) -> dict[str, torch.Tensor]:
    """CPU copies of the weights that fusing the adapter will change, under the UNet's own names."""
    return {f"{name}.weight": layer.weight.detach().to("cpu", copy=True)
            for name, layer in target_layers(unet, config.lora_target_modules).items()}


def lora_config(config):
    from peft import LoraConfig

    return LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank,
                      target_modules=list(config.lora_target_modules), init_lora_weights=True)


def attach(unet, config, seed: int) -> None:
    """Add the adapter, its A matrices drawn from (seed, name): the same seed gives the same bytes."""
    from .train import seeded_generator  # train imports this module

    target_layers(unet, config.lora_target_modules)
    with torch.random.fork_rng(devices=[]):  # peft's own draws are replaced below; leave the global stream alone
        unet.add_adapter(lora_config(config), adapter_name=ADAPTER)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if ".lora_A." in name:
                drawn = torch.empty(p.shape, dtype=p.dtype)
                torch.nn.init.kaiming_uniform_(drawn, a=math.sqrt(5), generator=seeded_generator(seed, "lora", name))
                p.copy_(drawn)  # the distribution peft uses for A (that of nn.Linear's weight)
            elif ".lora_B." in name:
                p.zero_()


def is_lora_parameter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name


@dataclass
class Adapter:
    """A trained adapter taken off the UNet: its tensors in peft's names (no adapter name), on the CPU."""

    state: dict[str, torch.Tensor]
    rank: int
    target_modules: tuple[str, ...]
    pipeline_class: type  # its save_lora_weights writes the diffusers file

    @property
    def parameters(self) -> int:
        return sum(t.numel() for t in self.state.values())

    def write(self, folder: Path, stem: str) -> dict:
        """Both files under `folder`; returns the manifest's record of them (paths relative to its parent)."""
        from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
        from safetensors.torch import save_file

        # No metadata beyond diffusers' one "format" key: safetensors writes a header's metadata in
        # a random order (safetensors#584), so two keys would make the same adapter other bytes.
        # The loaders need none: the rank is in the shapes, and alpha = rank is what both assume
        # without it (diffusers) or read from the `.alpha` tensors (kohya).
        self.pipeline_class.save_lora_weights(
            folder, unet_lora_layers=convert_state_dict_to_diffusers(self.state), weight_name=DIFFUSERS_FILE,
            safe_serialization=True,
        )
        kohya = convert_state_dict_to_kohya({f"unet.{name}": t for name, t in self.state.items()})
        kohya_file = f"{stem}_kohya.safetensors"
        save_file(kohya, folder / kohya_file)
        return {
            "diffusers": f"{folder.name}/{DIFFUSERS_FILE}", "kohya": f"{folder.name}/{kohya_file}",
            "rank": self.rank, "alpha": self.rank, "target_modules": list(self.target_modules),
            "tensors": len(self.state), "parameters": self.parameters,
        }


def take_adapter(pipe, config) -> Adapter | None:
    """The trained adapter, after fusing it into the UNet's weights and removing it
    (None when the UNet carries none: nothing changes)."""
    from peft.utils import get_peft_model_state_dict

    unet = pipe.unet
    if ADAPTER not in (getattr(unet, "peft_config", None) or {}):
        return None
    state = {name: t.detach().to("cpu", copy=True).contiguous()
             for name, t in get_peft_model_state_dict(unet, adapter_name=ADAPTER).items()}
    unet.fuse_lora(adapter_names=[ADAPTER])
    unet.unload_lora()
    return Adapter(state, config.lora_rank, tuple(config.lora_target_modules), type(pipe))


def file_stem(concepts: list[str]) -> str:
    """A file name from the concepts, safe on every file system: 'erase-van-gogh'."""
    words = re.findall(r"[a-z0-9]+", " ".join(concepts).lower())
    return "-".join(["erase", *words])[:80].rstrip("-")
