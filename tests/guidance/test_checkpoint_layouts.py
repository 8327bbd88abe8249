"""The public checkpoints' real layouts: subfolder + variant (ControlNetMediaPipeFace), pickle-only
repositories (IP-Adapter-FaceID, HumanNorm) found / needing convert-weights / missing, the conversion
itself (exact round trip, refusals, no code run) and the role checks read from config.json."""

from __future__ import annotations

import copy
import dataclasses
import json
import shlex
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from common.errors import ConfigError, UserError
from fitter.cli import main
from fitter.config import load_config
from guidance.models import tiny_builders as tb
from guidance.models.bundle import ip_adapter_file, load_controlnet, load_identity_adapter, load_stable_diffusion
from guidance.models.config import ModelsConfig, pickle_name
from guidance.models.convert import MANIFEST, ConvertError, convert_weights, tensors_of
from guidance.models.ip_adapter import attach_ip_adapter, flatten
from guidance.models.sanity import role_problems
from guidance.models.sources import check_model, model_spec
from guidance.models.tiny import TINY_FIELDS, tiny_models_config
from guidance.registry import ModelSpec, converted_dir, locate, safetensors_name
from tests.checkpoint_layouts import (
    IP_ADAPTER,
    IP_BIN,
    LANDMARKS,
    NORMAL_SD,
    SystemCall,
    hub_snapshot,
    ip_adapter_bin,
    landmarks_repo,
    pickle_sd_folder,
)


@pytest.fixture
def caches(tmp_path, monkeypatch) -> Path:
    """An empty Hugging Face cache (returned) and $HEADFIT_CACHE, both under tmp_path; the hub offline."""
    monkeypatch.setenv("HEADFIT_CACHE", str(tmp_path / "headfit"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


def fp16_copy(net) -> dict[str, torch.Tensor]:
    return {k: v.half().float() for k, v in net.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def run_printed(command: str) -> int:
    """Run a printed `python run.py ...` command line in this process."""
    words = shlex.split(command)
    assert words[:2] == ["python", "run.py"]
    return main(words[2:])


# --- subfolder and variant -----------------------------------------------------------------------------
def test_landmark_controlnet_default_loads_sd15_fp16_from_the_subfolder(tmp_path, caches):
    net = landmarks_repo(tmp_path / "cn")
    loaded = load_controlnet(ModelsConfig(controlnet_landmarks=str(tmp_path / "cn")), "landmarks")
    assert loaded.dtype == torch.float32 and loaded.config.cross_attention_dim == tb.CROSS_DIM
    assert same_state(loaded.state_dict(), fp16_copy(net))  # the .fp16.safetensors, cast to the run's dtype

    snapshot = hub_snapshot(caches, LANDMARKS)  # the same from the hub cache, by hub id (the default)
    landmarks_repo(snapshot)
    models = ModelsConfig(cache_dir=str(caches))
    location = locate(model_spec(models, "controlnet_landmarks"), models.cache_dir)
    assert location.found == snapshot and location.model_path == snapshot / "diffusion_sd15"
    assert same_state(load_controlnet(models, "landmarks").state_dict(), fp16_copy(net))

    root = dataclasses.replace(models, subfolders={"controlnet_landmarks": ""}, variants={})
    assert load_controlnet(root, "landmarks").config.cross_attention_dim == 2 * tb.CROSS_DIM  # the SD2.1 root


def test_missing_variant_is_named(tmp_path, caches):
    folder = tmp_path / "cn"
    landmarks_repo(folder)
    (folder / "diffusion_sd15" / "diffusion_pytorch_model.fp16.safetensors").unlink()
    models = ModelsConfig(controlnet_landmarks=str(folder), allow_pickle=["controlnet_landmarks"])
    check = check_model(model_spec(models, "controlnet_landmarks"), models)
    assert check.state == "missing" and "no variant 'fp16' weights" in check.why and "models.variants.controlnet_landmarks" in check.why
    assert check_model(model_spec(dataclasses.replace(models, variants={}), "controlnet_landmarks"), models).ok


# --- found / needs convert-weights / missing ---------------------------------------------------------------
def test_ip_adapter_bin_needs_converting_then_loads_without_pickle(caches):
    snapshot = hub_snapshot(caches, IP_ADAPTER)
    unet = tb.tiny_unet().eval()
    state = ip_adapter_bin(snapshot, unet)
    models = ModelsConfig(cache_dir=str(caches))
    assert models.ip_adapter_weight == IP_BIN
    check = check_model(model_spec(models, "ip_adapter"), models)
    assert check.state == "convert" and check.path == snapshot / IP_BIN
    assert check.command == f"python run.py convert-weights {snapshot / IP_BIN} {converted_dir(IP_ADAPTER)}"
    assert check.line() == f"needs convert-weights, {IP_BIN} is a pickle; run: {check.command}"
    with pytest.raises(UserError, match="check-models"):  # the loader refuses the pickle too
        load_identity_adapter(tb.tiny_unet(), models)

    assert run_printed(check.command) == 0
    converted = converted_dir(IP_ADAPTER) / "ip-adapter-faceid-portrait-v11_sd15.safetensors"
    assert same_state(load_file(str(converted)), flatten(state))
    after = check_model(model_spec(models, "ip_adapter"), models)
    assert after.ok and after.path == converted and ip_adapter_file(models) == converted
    direct, via_file = copy.deepcopy(unet), copy.deepcopy(unet)
    attach_ip_adapter(direct, state)
    load_identity_adapter(via_file, models)  # no allow_pickle needed any more
    z, t, text = torch.randn(1, 4, 16, 16), torch.tensor([500]), torch.randn(1, 77, tb.CROSS_DIM)
    embeds = [torch.randn(1, 1, tb.ID_DIM)]
    with torch.no_grad():
        assert torch.equal(direct(z, t, text, added_cond_kwargs={"image_embeds": embeds}).sample,
                           via_file(z, t, text, added_cond_kwargs={"image_embeds": embeds}).sample)


def test_pickle_only_sd_folder_needs_converting_then_loads(caches):
    snapshot = hub_snapshot(caches, NORMAL_SD)
    states = pickle_sd_folder(snapshot)
    models = ModelsConfig(cache_dir=str(caches))
    check = check_model(model_spec(models, "normal_sd"), models)
    assert check.state == "convert" and check.path == snapshot
    assert check.command == f"python run.py convert-weights {snapshot} {converted_dir(NORMAL_SD)}"
    assert "unet/diffusion_pytorch_model.bin" in check.why and "text_encoder/pytorch_model.bin" in check.why
    with pytest.raises(UserError, match="convert-weights"):
        load_stable_diffusion(models, "normal_sd")
    allowed = check_model(model_spec(models, "normal_sd"), dataclasses.replace(models, allow_pickle=["normal_sd"]))
    assert allowed.ok and "allow_pickle" in allowed.why

    assert run_printed(check.command) == 0
    root = converted_dir(NORMAL_SD)
    for part, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model")):
        assert same_state(load_file(str(root / part / f"{name}.safetensors")), states[part])  # exact round trip
    assert (root / "tokenizer" / "tokenizer_config.json").is_file() and (root / "model_index.json").is_file()
    assert check_model(model_spec(models, "normal_sd"), models).path == root
    sd = load_stable_diffusion(models, "normal_sd")
    assert same_state(sd.unet.state_dict(), states["unet"]) and same_state(sd.text_encoder.state_dict(), states["text_encoder"])


def test_missing_model_names_every_place(caches):
    models = ModelsConfig(cache_dir=str(caches), normal_sd="someone/absent")
    check = check_model(model_spec(models, "normal_sd"), models)
    assert check.state == "missing"
    line = check.line()
    assert line.startswith("MISSING looked in ") and "converted weights" in line and f"hub cache {caches}" in line


def test_a_local_pickle_folder_converts_next_to_itself(tmp_path, caches):
    pickle_sd_folder(tmp_path / "mine")
    models = ModelsConfig(depth_sd=str(tmp_path / "mine"))
    check = check_model(model_spec(models, "depth_sd"), models)
    assert check.command == f"python run.py convert-weights {tmp_path / 'mine'} {tmp_path / 'mine-safetensors'}"
    assert check.then == f"set models.depth_sd={tmp_path / 'mine-safetensors'}"
    assert run_printed(check.command) == 0
    moved = dataclasses.replace(models, depth_sd=str(tmp_path / "mine-safetensors"))
    assert check_model(model_spec(moved, "depth_sd"), moved).ok


# --- convert-weights ---------------------------------------------------------------------------------------
def test_convert_a_file_round_trips_and_may_be_redone(tmp_path):
    t = torch.arange(12.0).reshape(3, 4)
    state = {"state_dict": {"a": t, "same": t, "slice": t[1:], "transposed": t.t(), "half": torch.ones(2, dtype=torch.float16),
                            "nested": {"b": torch.zeros(1)}, "step": 7}}
    torch.save(state, tmp_path / "w.pt")
    written = convert_weights(tmp_path / "w.pt", tmp_path / "out")
    assert written == [tmp_path / "out" / "w.safetensors"]
    got = load_file(str(written[0]))
    assert sorted(got) == ["a", "half", "nested.b", "same", "slice", "transposed"]  # tensors only, shared ones cloned
    assert torch.equal(got["slice"], t[1:]) and torch.equal(got["transposed"], t.t()) and got["half"].dtype == torch.float16
    assert convert_weights(tmp_path / "w.pt", tmp_path / "out") == written  # its own output may be rewritten
    assert convert_weights(tmp_path / "w.pt", tmp_path / "x.safetensors") == [tmp_path / "x.safetensors"]
    assert not list(tmp_path.rglob("*.tmp*"))


def test_convert_names_and_sharded_index(tmp_path):
    assert safetensors_name("diffusion_pytorch_model.bin") == "diffusion_pytorch_model.safetensors"
    assert safetensors_name("pytorch_model.bin") == "model.safetensors"
    assert safetensors_name("x.fp16.bin") == "x.fp16.safetensors"
    assert safetensors_name("pytorch_model-00001-of-00002.bin") == "model-00001-of-00002.safetensors"
    src = tmp_path / "sharded"
    src.mkdir()
    torch.save({"a": torch.ones(1)}, src / "pytorch_model-00001-of-00002.bin")
    torch.save({"b": torch.zeros(1)}, src / "pytorch_model-00002-of-00002.bin")
    index = {"metadata": {}, "weight_map": {"a": "pytorch_model-00001-of-00002.bin", "b": "pytorch_model-00002-of-00002.bin"}}
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    convert_weights(src, tmp_path / "out")
    rewritten = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert rewritten["weight_map"] == {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        MANIFEST, "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"]


def test_convert_keeps_an_existing_safetensors_twin(tmp_path):
    net = landmarks_repo(tmp_path / "cn")
    convert_weights(tmp_path / "cn" / "diffusion_sd15", tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "config.json", "diffusion_pytorch_model.fp16.safetensors",
                                                     "diffusion_pytorch_model.safetensors"]
    assert same_state(load_file(str(out / "diffusion_pytorch_model.safetensors")), net.state_dict())


@pytest.mark.parametrize("where", ["itself", "inside", "user file", "user file (file source)"])
def test_convert_refuses_places_it_must_not_write(tmp_path, where):
    src = tmp_path / "src"
    pickle_sd_folder(src)
    before = sorted(p for p in tmp_path.rglob("*"))
    if where == "itself":
        args, fragment = (src, src), "into itself"
    elif where == "inside":
        args, fragment = (src, src / "converted"), "must not be inside SRC"
    elif where == "user file":
        (tmp_path / "dst" / "unet").mkdir(parents=True)
        (tmp_path / "dst" / "unet" / "diffusion_pytorch_model.safetensors").write_text("mine")
        before = sorted(p for p in tmp_path.rglob("*"))
        args, fragment = (src, tmp_path / "dst"), "was not written by convert-weights"
    else:
        (tmp_path / "dst").mkdir()
        (tmp_path / "dst" / "pytorch_model.safetensors").write_text("mine")
        before = sorted(p for p in tmp_path.rglob("*"))
        args, fragment = (src / "unet" / "diffusion_pytorch_model.bin", tmp_path / "dst" / "pytorch_model.safetensors"), "was not written"
    with pytest.raises(ConvertError, match=fragment) as info:
        convert_weights(*args)
    assert "\n" not in str(info.value) and sorted(p for p in tmp_path.rglob("*")) == before


def test_convert_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "repo").mkdir()
    torch.save({"image_proj": {"norm.weight": SystemCall(f"touch {marker}")}, "ip_adapter": {}}, tmp_path / "repo" / IP_BIN)
    (tmp_path / "repo" / "config.json").write_text("{}")
    for src in (tmp_path / "repo" / IP_BIN, tmp_path / "repo"):
        with pytest.raises(ConvertError, match="refusing to convert .*not plain weights") as info:
            convert_weights(src, tmp_path / "out")
        assert "\n" not in str(info.value)
    assert not marker.exists() and not list((tmp_path / "out").rglob("*.safetensors"))


def test_convert_flattens_an_ip_adapter_as_the_loader_does(tmp_path):
    state = tb.tiny_ip_adapter(tb.tiny_unet())
    assert same_state(tensors_of(state, tmp_path / "ip.bin"), flatten(state))
    with pytest.raises(ConvertError, match="holds no tensors"):
        tensors_of({"epoch": 3}, tmp_path / "x.bin")


# --- role checks -------------------------------------------------------------------------------------------------
def write_config(path: Path, **values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def sd_configs(folder: Path, cross: int = 768, in_channels: int = 4, hidden: int | None = None) -> None:
    write_config(folder / "model_index.json", _class_name="StableDiffusionPipeline", unet=["diffusers", "UNet2DConditionModel"])
    write_config(folder / "unet" / "config.json", in_channels=in_channels, cross_attention_dim=cross)
    write_config(folder / "text_encoder" / "config.json", hidden_size=hidden or cross)


def located(models: ModelsConfig, *fields: str) -> dict[str, tuple[ModelSpec, Path]]:
    out = {}
    for field in fields:
        check = check_model(model_spec(models, field), models)
        assert check.path is not None, check.line()
        out[check.spec.key] = (check.spec, check.path)
    return out


def test_the_sd21_landmark_controlnet_is_caught(tmp_path):
    sd_configs(tmp_path / "sd")
    write_config(tmp_path / "cn" / "config.json", cross_attention_dim=1024)  # the repository root: SD2.1
    write_config(tmp_path / "cn" / "diffusion_sd15" / "config.json", cross_attention_dim=768)
    models = ModelsConfig(base=str(tmp_path / "sd"), controlnet_landmarks=str(tmp_path / "cn"), allow_pickle=["controlnet_landmarks"])
    assert role_problems(located(models, "base", "controlnet_landmarks")) == []
    root = dataclasses.replace(models, subfolders={"controlnet_landmarks": ""})
    assert role_problems(located(root, "base", "controlnet_landmarks")) == [
        f"landmark ControlNet models.controlnet_landmarks={tmp_path / 'cn'} (variant fp16) has cross_attention_dim 1024 but the ISD base UNet "
        "(models.base) has 768: this is the SD2.1 ControlNet; use models.subfolders.controlnet_landmarks=diffusion_sd15"]


def test_wrong_unet_channels_text_width_and_ip_tokens_are_caught(tmp_path):
    sd_configs(tmp_path / "inpaint", in_channels=9)
    sd_configs(tmp_path / "mixed", hidden=1024)
    sd_configs(tmp_path / "texture")
    (tmp_path / "ip").mkdir()
    save_file({"image_proj.norm.weight": torch.ones(1024), "ip_adapter.1.to_k_ip.weight": torch.ones(1)},
              str(tmp_path / "ip" / "ip.safetensors"))
    models = ModelsConfig(normal_sd=str(tmp_path / "inpaint"), depth_sd=str(tmp_path / "mixed"), texture_base=str(tmp_path / "texture"),
                          ip_adapter=str(tmp_path / "ip"), ip_adapter_weight="ip.safetensors")
    problems = role_problems(located(models, "normal_sd", "depth_sd", "texture_base", "ip_adapter"), "models.normal_sd")
    assert problems[0] == (f"normal-adapted SD1.5 models.normal_sd={tmp_path / 'inpaint'} has a UNet with in_channels 9 but this role "
                           "needs 4 (not an inpainting or depth-to-image UNet; an inpainting one goes in fit.texture.inpaint_model)")
    assert problems[1].startswith(f"depth-adapted SD1.5 models.depth_sd={tmp_path / 'mixed'} has a text encoder with hidden_size 1024 "
                                  "but its UNet's cross_attention_dim is 768")
    assert "IP-Adapter-FaceID models.ip_adapter=" in problems[2] and "1024-d identity tokens but the ISD base UNet (models.normal_sd)" in problems[2]
    assert len(problems) == 5 and all("\n" not in p for p in problems)  # the IP-Adapter against each of the three UNets


def test_the_tiny_models_fit_their_roles(tmp_path):
    models = tiny_models_config(ModelsConfig(), tmp_path / "tiny")
    fields = sorted(TINY_FIELDS - {"arcface"})
    assert role_problems(located(models, *fields), "models.normal_sd") == []
    assert role_problems(located(models, *fields), "models.base") == []


# --- the config keys -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override", ["models.allow_pickle=true", "models.allow_pickle=false"])
def test_the_old_allow_pickle_form_says_the_new_one(override):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    message = str(info.value)
    assert message.startswith("bad config: models.allow_pickle is now a list") and "models.allow_pickle=[normal_sd" in message


@pytest.mark.parametrize("override, fragment", [
    ("models.allow_pickle=[normal_sd,nope]", "models.allow_pickle names unknown model field(s) nope"),
    ("models.subfolders.nope=x", "models.subfolders names unknown model field(s) nope"),
    ("models.variants.ip_adapter=fp16", "models.variants names unknown model field(s) ip_adapter"),
    ("models.subfolders.base=../up", "models.subfolders.base must be a relative folder"),
])
def test_unknown_model_fields_are_config_errors(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        load_config(None, [override])


def test_pickle_names_and_defaults():
    models = load_config(None, ["models.allow_pickle=[lpips,inpaint_model]", "models.subfolders.controlnet_landmarks="]).models
    assert models.pickle_allowed("lpips") and not models.pickle_allowed("normal_sd")
    assert models.subfolder("controlnet_landmarks") == "" and models.variant("controlnet_landmarks") == "fp16"
    assert [pickle_name(k) for k in ("models.normal_sd", "fit.texture.inpaint_model", "init.gan.lpips_weights")] == [
        "normal_sd", "inpaint_model", "lpips"]
    defaults = ModelsConfig()
    assert defaults.subfolders == {"controlnet_landmarks": "diffusion_sd15"} and defaults.variants == {"controlnet_landmarks": "fp16"}
    assert defaults.ip_adapter_weight == "ip-adapter-faceid-portrait-v11_sd15.bin" and defaults.allow_pickle == []
