"""The random-full preset: real-size configs (counted on the meta device), the public layouts (written with
tiny models through the same writer), their conversion and loading through the real loaders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from fitter import dry_run
from fitter.config import REPO_ROOT, load_config
from fitter.requirements import required_models
from guidance.models import load_controlnet, load_identity_adapter, load_stable_diffusion, presets, random_full
from guidance.models import tiny_builders as tb
from guidance.models.config import ModelsConfig
from guidance.models.ip_adapter import num_identity_tokens
from guidance.models.loading import load_vae
from guidance.models.random_full import FULL, TINY, repo_dir
from guidance.models.sources import LoadOptions, check_model, model_spec, resolve

pytestmark = pytest.mark.usefixtures("one_thread")

SD_FILES = {"model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json", "tokenizer/merges.txt",
            "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json", "unet/config.json",
            "vae/config.json"}
SAFE_SD = SD_FILES | {"text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"}
PICKLE_SD = SD_FILES | {"text_encoder/pytorch_model.bin", "unet/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.bin"}
SINGLE = {"config.json", "diffusion_pytorch_model.safetensors"}
LAYOUTS = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": SAFE_SD,
    "SG161222/Realistic_Vision_V4.0_noVAE": SAFE_SD,
    "xanderhuang/normal-adapted-sd1.5": PICKLE_SD,
    "xanderhuang/depth-adapted-sd1.5": PICKLE_SD,
    "stabilityai/sd-vae-ft-mse": SINGLE,
    "lllyasviel/control_v11p_sd15_normalbae": SINGLE,
    "lllyasviel/control_v11p_sd15_canny": SINGLE,
    "CrucibleAI/ControlNetMediaPipeFace": SINGLE | {"diffusion_sd15/config.json", "diffusion_sd15/diffusion_pytorch_model.bin",
                                                    "diffusion_sd15/diffusion_pytorch_model.fp16.safetensors"},
    "h94/IP-Adapter-FaceID": {"ip-adapter-faceid-portrait-v11_sd15.bin"},
}
"""The public repositories' files the fit reads (the subset random-full writes), per repository."""


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def millions(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_real_size_configs_have_the_published_parameter_counts():
    with torch.device("meta"):
        tokenizer = FULL.tokenizer()
        unet, vae, text = FULL.unet(), FULL.vae(), FULL.text_encoder(tokenizer)
        controlnet = FULL.controlnet(unet)
        ip = FULL.ip_adapter(unet)
    assert 859.0 < millions(unet) < 860.0  # SD1.5: 859.52M
    assert 83.6 < millions(vae) < 83.7  # 83.65M
    assert 123.0 < millions(text) < 123.1 and text.config.vocab_size == 49408 and text.config.num_hidden_layers == 12
    assert 361.0 < millions(controlnet) < 361.5 and tuple(controlnet.config.conditioning_embedding_out_channels) == (16, 32, 96, 256)
    proj = ip["image_proj"]
    assert proj["proj.0.weight"].shape == (1024, 512) and proj["proj.2.weight"].shape == (16 * 768, 1024)
    assert proj["norm.weight"].shape == (768,)
    keys = sorted({int(k.split(".")[0]) for k in ip["ip_adapter"]})
    assert keys == list(range(1, 32, 2))  # 16 cross-attention layers, h94 numbering
    assert ip["ip_adapter"]["1.to_k_ip.weight"].shape == (320, 768)  # down_blocks.0 ...
    assert ip["ip_adapter"]["31.to_v_ip.weight"].shape == (1280, 768)  # ... mid_block last, in diffusers' processor order


def test_layouts_are_the_public_repositories(tmp_path):
    random_full.write_layouts(tmp_path, TINY)
    assert {p.name for p in (tmp_path / "hub").iterdir()} == {repo.replace("/", "--") for repo in LAYOUTS}
    for repo, expected in LAYOUTS.items():
        assert files(repo_dir(tmp_path, repo)) == expected, repo
    sd15, vision = repo_dir(tmp_path, random_full.SD15), repo_dir(tmp_path, random_full.REALISTIC_VISION)
    weights = "unet/diffusion_pytorch_model.safetensors"
    assert (sd15 / weights).stat().st_ino == (vision / weights).stat().st_ino  # shared weights, independent trees
    landmarks = repo_dir(tmp_path, random_full.CN_LANDMARKS)
    root_config = json.loads((landmarks / "config.json").read_text())
    assert root_config["cross_attention_dim"] == 2 * tb.CROSS_DIM and root_config["use_linear_projection"]  # the SD2.1 one
    assert json.loads((landmarks / "diffusion_sd15" / "config.json").read_text())["cross_attention_dim"] == tb.CROSS_DIM
    with safe_open(str(landmarks / "diffusion_sd15" / "diffusion_pytorch_model.fp16.safetensors"), "pt") as handle:
        assert all(handle.get_tensor(k).dtype == torch.float16 for k in handle.keys())
    index = json.loads((sd15 / "model_index.json").read_text())
    assert index["scheduler"] == ["diffusers", "PNDMScheduler"] and index["text_encoder"] == ["transformers", "CLIPTextModel"]


@pytest.fixture(scope="module")
def tiny_full(tmp_path_factory) -> ModelsConfig:
    """The preset's config, built with tiny models (layouts, conversion, `complete` marker)."""
    root = tmp_path_factory.mktemp("cache") / "random-full" / "v1"
    return random_full.random_full_config(ModelsConfig(preset="random-full"), root, TINY)


def test_preset_config_loads_every_model_through_the_real_loaders(tiny_full):
    root = Path(tiny_full.arcface).parents[1]
    assert (root / "complete").is_file() and tiny_full.preset == "real"
    for name in ("normal_sd", "depth_sd"):  # the .bin-only folders: converted next to them, as check-models says
        folder = Path(getattr(tiny_full, name))
        assert folder.name.endswith("-safetensors") and not any(p.suffix == ".bin" for p in folder.rglob("*"))
    assert (Path(tiny_full.ip_adapter) / "ip-adapter-faceid-portrait-v11_sd15.safetensors").is_file()
    assert tiny_full.allow_pickle == [] and tiny_full.subfolders["controlnet_landmarks"] == "diffusion_sd15"
    for name in random_full.FIELDS:
        assert check_model(model_spec(tiny_full, name), tiny_full).ok, name
    reference = load_stable_diffusion(tiny_full, "base")
    for name in ("normal_sd", "depth_sd", "texture_base"):
        sd = load_stable_diffusion(tiny_full, name, scheduler="ddim")
        assert all(torch.equal(a, b) for a, b in zip(sd.unet.state_dict().values(), reference.unet.state_dict().values()))
        assert len(sd.tokenizer) == 514 and sd.text_encoder.config.vocab_size == len(sd.tokenizer)
    landmarks, normal = load_controlnet(tiny_full, "landmarks"), load_controlnet(tiny_full, "normal")
    assert landmarks.dtype == torch.float32 and landmarks.config.cross_attention_dim == tb.CROSS_DIM  # diffusion_sd15, fp16 variant
    for (key, a), b in zip(landmarks.state_dict().items(), normal.state_dict().values()):
        assert torch.equal(a, b.half().float()), key
    assert load_controlnet(tiny_full, "canny").config.cross_attention_dim == tb.CROSS_DIM
    load_identity_adapter(reference.unet, tiny_full)
    assert num_identity_tokens(reference.unet) == 16
    vae = load_vae(resolve(model_spec(tiny_full, "texture_vae")), LoadOptions(), subfolder=None)
    assert vae.config.block_out_channels == reference.vae.config.block_out_channels
    assert Path(tiny_full.arcface).is_file()


def test_preset_is_built_once(tiny_full, monkeypatch):
    root = Path(tiny_full.arcface).parents[1]
    monkeypatch.setattr(random_full, "build_random_full", lambda *a, **k: pytest.fail("rebuilt a complete cache"))
    assert random_full.random_full_config(ModelsConfig(preset="random-full"), root, TINY) == tiny_full


def test_preset_is_wired_into_loading_requirements_and_dry_run(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(random_full, "random_full_config", lambda models: seen.append(models) or dataclasses.replace(models, preset="real"))
    models = ModelsConfig(preset="random-full")
    assert presets.effective_models_config(models).preset == "real" and seen == [models]
    cfg = load_config(REPO_ROOT / "configs" / "portrait3d.yaml", ["models.preset=random-full"])
    keys = {spec.key.removeprefix("models.") for spec in required_models(cfg)}
    assert not keys & random_full.PRESET_FIELDS
    assert not dry_run.wanted(cfg)  # real sizes, the full schedule unless run.dry_run=true
    assert dry_run.wanted(load_config(REPO_ROOT / "configs" / "portrait3d.yaml", ["models.preset=random-full", "run.dry_run=true"]))
