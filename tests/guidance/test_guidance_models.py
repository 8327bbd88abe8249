"""Model loading: tiny models round-trip through the real loader; missing, pickle and preset paths."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from common.errors import MissingModelError
from guidance.models import default_dtype, load_controlnet, load_identity_adapter, load_stable_diffusion, read_ip_adapter
from guidance.models import tiny_builders as tb
from guidance.models.config import ModelsConfig
from guidance.models.ip_adapter import attach_ip_adapter, flatten, num_identity_tokens
from guidance.models.tiny import IP_WEIGHT, ensure_tiny_models, tiny_models_config


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> ModelsConfig:
    root = tmp_path_factory.mktemp("cache") / "tiny-random" / "v1"
    return tiny_models_config(ModelsConfig(), root)


def _unet_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 16, 16, generator=g)
    text = torch.randn(2, 77, tb.CROSS_DIM, generator=g)
    return z, torch.tensor([10, 700]), text


def test_sd_round_trip_through_loader(tmp_path):
    torch.manual_seed(3)
    tok = tb.tiny_tokenizer()
    te = tb.tiny_text_encoder(len(tok), tok.bos_token_id, tok.eos_token_id).eval()
    unet, vae = tb.tiny_unet().eval(), tb.tiny_vae().eval()
    for name, module in (("text_encoder", te), ("unet", unet), ("vae", vae), ("tokenizer", tok), ("scheduler", tb.tiny_scheduler())):
        module.save_pretrained(tmp_path / name)
    tb.write_model_index(tmp_path)

    sd = load_stable_diffusion(ModelsConfig(base=str(tmp_path)))
    z, t, text = _unet_inputs()
    ids = tok(["a portrait, front view"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert torch.equal(sd.tokenizer(["a portrait, front view"], padding="max_length", max_length=77, return_tensors="pt").input_ids, ids)
    with torch.no_grad():
        assert torch.equal(sd.unet(z, t, text).sample, unet(z, t, text).sample)
        assert torch.equal(sd.text_encoder(ids)[0], te(ids)[0])
        image = torch.rand(1, 3, 32, 32)
        assert torch.equal(sd.vae.encode(image).latent_dist.mean, vae.encode(image).latent_dist.mean)
    assert sd.unet.dtype == torch.float32 and not any(p.requires_grad for p in sd.unet.parameters())
    assert torch.allclose(sd.scheduler.alphas_cumprod, tb.tiny_scheduler().alphas_cumprod)


def test_controlnet_and_ip_adapter_round_trip(tmp_path, tiny_cfg):
    torch.manual_seed(5)
    unet = tb.tiny_unet().eval()
    net = tb.tiny_controlnet(unet).eval()
    net.save_pretrained(tmp_path / "cn")
    loaded = load_controlnet(dataclasses.replace(tiny_cfg, controlnet_canny=str(tmp_path / "cn")), "canny")
    z, t, text = _unet_inputs()
    cond = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = net(z, t, text, controlnet_cond=cond, return_dict=False)
        got = loaded(z, t, text, controlnet_cond=cond, return_dict=False)
    assert all(torch.equal(a, b) for a, b in zip(ref[0], got[0])) and torch.equal(ref[1], got[1])
    assert ref[1].abs().max() > 0  # the control image really changes the residuals

    state = tb.tiny_ip_adapter(unet)
    from safetensors.torch import save_file

    (tmp_path / "ip").mkdir()
    save_file(flatten(state), str(tmp_path / "ip" / IP_WEIGHT))
    direct, via_file = tb.tiny_unet().eval(), tb.tiny_unet().eval()
    direct.load_state_dict(unet.state_dict()), via_file.load_state_dict(unet.state_dict())
    attach_ip_adapter(direct, state)
    load_identity_adapter(via_file, dataclasses.replace(tiny_cfg, ip_adapter=str(tmp_path / "ip")))
    embeds = [torch.randn(2, 1, tb.ID_DIM)]
    with torch.no_grad():
        assert torch.equal(direct(z, t, text, added_cond_kwargs={"image_embeds": embeds}).sample,
                           via_file(z, t, text, added_cond_kwargs={"image_embeds": embeds}).sample)
    assert num_identity_tokens(via_file) == tb.ID_TOKENS


def test_preset_loads_every_hero_model(tiny_cfg):
    from fitter.stages.intake.identity import load_arcface

    for name in ("base", "normal_sd", "depth_sd", "texture_base"):
        assert load_stable_diffusion(tiny_cfg, name).unet.config.cross_attention_dim == tb.CROSS_DIM
    for which in ("landmarks", "normal", "canny"):
        assert tuple(load_controlnet(tiny_cfg, which).config.conditioning_embedding_out_channels) == (8, 16)
    from guidance.models import loading
    from guidance.models.sources import model_spec, resolve

    vae = loading.load_vae(resolve(model_spec(tiny_cfg, "texture_vae")), loading.LoadOptions(), subfolder=None)
    assert vae.config.latent_channels == 4
    feat = load_arcface(tiny_cfg.arcface).get_feat(torch.randint(0, 255, (112, 112, 3), dtype=torch.uint8).numpy())
    assert feat.shape == (1, tb.ID_DIM)


def test_preset_is_cached_and_deterministic(tiny_cfg, tmp_path):
    from pathlib import Path

    root = Path(tiny_cfg.base).parent
    stamp = (root / "base" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_models(root) == root
    assert (root / "base" / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp
    tiny_models_config(ModelsConfig(), tmp_path / "again")  # a second, independent build

    def digest(base):
        return hashlib.sha256((base / "base" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()

    assert digest(root) == digest(tmp_path / "again")
    assert (root / "ip_adapter" / IP_WEIGHT).read_bytes() == (tmp_path / "again" / "ip_adapter" / IP_WEIGHT).read_bytes()


def test_missing_models_name_what_and_where(tmp_path, monkeypatch):
    with pytest.raises(MissingModelError, match=r"models\.base.*nowhere") as err:
        load_stable_diffusion(ModelsConfig(base=str(tmp_path / "nowhere")))
    assert "\n" not in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingModelError, match=r"models\.controlnet_canny.*hub cache"):
        load_controlnet(ModelsConfig(cache_dir=str(tmp_path), controlnet_canny="someone/not-cached"), "canny")
    with pytest.raises(MissingModelError, match=r"models\.ip_adapter"):
        load_identity_adapter(tb.tiny_unet(), ModelsConfig(cache_dir=str(tmp_path)))


def test_pickle_weights_refused_unless_allowed(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    unet = tb.tiny_unet()
    base = tmp_path / "sd"
    unet.save_pretrained(base / "unet", safe_serialization=False)
    assert list((base / "unet").glob("*.bin")) and not list((base / "unet").glob("*.safetensors"))
    from guidance.models import loading
    from guidance.models.sources import LoadOptions, Resolved
    from guidance.registry import ModelSpec

    src = Resolved(ModelSpec("ISD base (SD1.5)", "models.base", str(base)), str(base), True)
    with pytest.raises(MissingModelError, match="pickle"):
        loading.load_unet(src, LoadOptions(allow_pickle=False))
    assert loading.load_unet(src, LoadOptions(allow_pickle=True)).config.cross_attention_dim == tb.CROSS_DIM

    state = tb.tiny_ip_adapter(unet)
    torch.save(state, tmp_path / "ip.bin")
    with pytest.raises(MissingModelError, match="pickle"):
        read_ip_adapter(tmp_path / "ip.bin", allow_pickle=False)
    loaded = read_ip_adapter(tmp_path / "ip.bin", allow_pickle=True)
    assert all(torch.equal(loaded["ip_adapter"][k], v) for k, v in state["ip_adapter"].items())
    cfg = dataclasses.replace(tiny_cfg, ip_adapter=str(tmp_path), ip_adapter_weight="ip.bin")
    with pytest.raises(MissingModelError, match="allow_pickle"):
        load_identity_adapter(tb.tiny_unet(), cfg)


def test_dtype_follows_device():
    assert default_dtype("cpu") == torch.float32
    assert default_dtype("cuda") == torch.float16
    assert default_dtype("cuda", "bf16") == torch.bfloat16
