"""Tiny random checkpoints in the layouts of the public repositories the hero fit loads (for the tests of
model location, convert-weights and the role checks). Test files import from here, never from one another.

* ``CrucibleAI/ControlNetMediaPipeFace``: an SD2.1-like ControlNet at the root (cross-attention twice the
  tiny UNet's), the SD1.5 one in ``diffusion_sd15/`` as ``diffusion_pytorch_model.bin`` (fp32) and
  ``diffusion_pytorch_model.fp16.safetensors`` (no plain .safetensors).
* ``h94/IP-Adapter-FaceID``: ``ip-adapter-faceid-portrait-v11_sd15.bin``, a torch pickle of the two dicts.
* ``xanderhuang/normal-adapted-sd1.5``: a diffusers SD folder whose weights are ``.bin`` only.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

from guidance.models import tiny_builders as tb

LANDMARKS = "CrucibleAI/ControlNetMediaPipeFace"
IP_ADAPTER = "h94/IP-Adapter-FaceID"
NORMAL_SD = "xanderhuang/normal-adapted-sd1.5"
IP_BIN = "ip-adapter-faceid-portrait-v11_sd15.bin"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in a Hugging Face cache laid out as huggingface_hub does
    (``models--owner--name/refs/main`` naming the commit, ``snapshots/<commit>/``); fill it with files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def tiny_unet_with(**changes):
    """The tiny UNet with some config values changed (e.g. an SD2.1-like cross_attention_dim)."""
    from diffusers import UNet2DConditionModel

    config = {**dict(tb.tiny_unet().config), **changes}
    return UNet2DConditionModel.from_config(config)


def landmarks_repo(folder: Path, seed: int = 0):
    """The ControlNetMediaPipeFace layout in ``folder``; returns the SD1.5 ControlNet (fp32, as saved in the .bin)."""
    torch.manual_seed(seed)
    tb.tiny_controlnet(tiny_unet_with(cross_attention_dim=2 * tb.CROSS_DIM)).save_pretrained(folder)  # the SD2.1 root
    net = tb.tiny_controlnet(tb.tiny_unet()).eval()
    sub = folder / "diffusion_sd15"
    net.save_pretrained(sub, safe_serialization=False)
    copy.deepcopy(net).half().save_pretrained(sub, variant="fp16")
    assert sorted(p.name for p in sub.iterdir()) == ["config.json", "diffusion_pytorch_model.bin",
                                                     "diffusion_pytorch_model.fp16.safetensors"]
    return net


def ip_adapter_bin(folder: Path, unet=None, seed: int = 1) -> dict[str, dict[str, torch.Tensor]]:
    """``folder/ip-adapter-faceid-portrait-v11_sd15.bin`` (torch.save of the nested dicts); returns the state."""
    torch.manual_seed(seed)
    state = tb.tiny_ip_adapter(unet if unet is not None else tb.tiny_unet())
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / IP_BIN)
    return state


def pickle_sd_folder(folder: Path, seed: int = 2) -> dict[str, dict[str, torch.Tensor]]:
    """A diffusers SD folder whose unet/, vae/ and text_encoder/ hold ``.bin`` weights only (as the HumanNorm
    repositories); returns each component's state dict."""
    torch.manual_seed(seed)
    tokenizer = tb.tiny_tokenizer()
    text_encoder = tb.tiny_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    text_encoder.save_pretrained(folder / "text_encoder")  # transformers 5 writes safetensors only: swap it for a pickle
    (folder / "text_encoder" / "model.safetensors").unlink()
    torch.save(text_encoder.state_dict(), folder / "text_encoder" / "pytorch_model.bin")
    tokenizer.save_pretrained(folder / "tokenizer")
    unet, vae = tb.tiny_unet(), tb.tiny_vae()
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    vae.save_pretrained(folder / "vae", safe_serialization=False)
    tb.tiny_scheduler().save_pretrained(folder / "scheduler")
    tb.write_model_index(folder)
    assert not list(folder.rglob("*.safetensors"))
    return {"unet": unet.state_dict(), "vae": vae.state_dict(), "text_encoder": text_encoder.state_dict()}


class SystemCall:
    """Pickles to ``os.system(command)``: what a hostile weight file does when unpickled unrestricted."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))
