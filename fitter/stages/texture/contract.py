"""The `texture` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from fitter.config import Config
from fitter.contract import StageContract, fixed_sections, identity_models
from fitter.stages.texture.stage import run
from guidance.registry import ModelSpec


def models(cfg: Config) -> list[ModelSpec]:
    m, t = cfg.models, cfg.fit.texture
    if t.mode != "diffusion":
        return []
    specs = [
        ModelSpec("texture base (SD1.5 family)", "models.texture_base", m.texture_base),
        ModelSpec("texture VAE", "models.texture_vae", m.texture_vae, "config.json"),
        ModelSpec("normal ControlNet", "models.controlnet_normal", m.controlnet_normal, "config.json"),
    ]
    if t.inpaint_model:
        specs.append(ModelSpec("SD1.5 inpainting UNet", "fit.texture.inpaint_model", t.inpaint_model, "unet/config.json"))
    if t.sr_model:
        specs.append(ModelSpec("texture super-resolution (ONNX)", "fit.texture.sr_model", t.sr_model, ""))
    if t.lpips_weights:
        specs.append(ModelSpec("LPIPS weights (texture refinement)", "fit.texture.lpips_weights", t.lpips_weights, ""))
    return specs + identity_models(cfg)


CONTRACT = StageContract(
    name="texture",
    run=run,
    reads=("intake", "init", "geometry"),
    writes=("texture/head.obj", "texture/texture.json", "texture/albedo.png"),
    sections=fixed_sections("fit.texture", "models", "prompt", "run.seed"),
    models=models,
    summary="UV layout and texture: photo projection, or progressive inpainting and SDEdit refinement",
)
