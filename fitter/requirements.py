"""Which models a config needs (the stages it enables decide), and whether they are present."""

from __future__ import annotations

from fitter.config import Config
from guidance.registry import Location, ModelSpec, locate


def required_models(cfg: Config) -> list[ModelSpec]:
    """Every model the config's stages will load.

    The tiny-random preset builds the SD-family models, ControlNets, IP-Adapter and ArcFace in code;
    what it does not build (estimators, PanoHead, face parsing) is still needed from the user."""
    specs = _needed(cfg)
    if cfg.models.preset == "tiny-random":
        from guidance.models.tiny import TINY_FIELDS

        specs = [spec for spec in specs if spec.key.removeprefix("models.") not in TINY_FIELDS]
    return specs


def _needed(cfg: Config) -> list[ModelSpec]:
    m = cfg.models
    specs: list[ModelSpec] = []
    identity = False
    isd = cfg.fit.geometry.isd
    if cfg.fit.geometry.lambda_isd > 0:
        specs.append(ModelSpec("ISD base (SD1.5)", "models.base", m.base))
        if isd.landmark_control:
            specs.append(ModelSpec("landmark ControlNet (MediaPipe face)", "models.controlnet_landmarks", m.controlnet_landmarks, "config.json"))
        identity = identity or isd.identity_tokens
    if cfg.reference.source == "generate":
        specs += [
            ModelSpec("normal-adapted SD1.5", "models.normal_sd", m.normal_sd),
            ModelSpec("depth-adapted SD1.5", "models.depth_sd", m.depth_sd),
            ModelSpec("canny ControlNet", "models.controlnet_canny", m.controlnet_canny, "config.json"),
        ]
        identity = True
    if cfg.reference.source == "estimator" and m.normal_estimator:
        from fitter.stages.reference.estimate_normals import normal_estimator_spec

        specs.append(normal_estimator_spec(m))
    if cfg.reference.source == "estimator" and m.depth_estimator:
        from fitter.stages.reference.estimate_depth import depth_estimator_spec

        specs.append(depth_estimator_spec(m))
    if cfg.fit.texture.mode == "diffusion":
        specs += [
            ModelSpec("texture base (SD1.5 family)", "models.texture_base", m.texture_base),
            ModelSpec("texture VAE", "models.texture_vae", m.texture_vae, "config.json"),
            ModelSpec("normal ControlNet", "models.controlnet_normal", m.controlnet_normal, "config.json"),
        ]
        identity = True
    if identity:
        specs += [
            ModelSpec("IP-Adapter-FaceID (portrait)", "models.ip_adapter", m.ip_adapter, m.ip_adapter_weight),
            ModelSpec("ArcFace ONNX (identity embedding)", "models.arcface", m.arcface, ""),
        ]
    if cfg.init.kind == "gan_inversion":
        specs.append(ModelSpec("PanoHead generator (GAN-inversion init)", "models.panohead", m.panohead, ""))
    if cfg.intake.segmenter == "face_parsing":
        specs.append(ModelSpec("face parsing", "models.face_parsing", m.face_parsing, "config.json"))
    unique: dict[str, ModelSpec] = {}
    for spec in specs:
        unique.setdefault(spec.key, spec)
    return list(unique.values())


def check_models(cfg: Config) -> list[Location]:
    return [locate(spec, cfg.models.cache_dir) for spec in required_models(cfg)]
