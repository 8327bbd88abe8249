"""Typed configuration: dataclasses turned into OmegaConf structured configs.

Loading order: dataclass defaults (the hero fit) <- YAML file (and the files it ``extends``) <-
``key.path=value`` overrides. An unknown key, a wrong type or an out-of-range value is a
`ConfigError` (one line, exit 2). Every number is checked: floats must be finite, integers fit
64 bits, and each setting has the range `validate` states (its error message names it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.errors import ConfigError
from representations.cameras import INPAINT_TRAJECTORY_AZIMUTHS, INPAINT_TRAJECTORY_ELEVATIONS

STAGES = ("intake", "init", "geometry", "texture", "export")
MAX_CROP = 4096
"""Largest intake.crop_size: a 4096² RGB crop and its mask are ~70 MB; much larger ones exhaust memory."""
MAX_PIXELS = 1_000_000_000
"""Largest intake.max_pixels: a decoded gigapixel RGB photo alone needs 3 GB."""
MAX_RADIUS = 100.0
"""Largest camera distance (world units; the head spans about ±1): farther, the head is a few pixels."""
REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "portrait3d.yaml"
CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class IntakeConfig:
    crop_size: int = 1024
    """Side of `subject/image.png`, the square head-centred crop; in [128, 4096]."""
    small_size: int = 512
    """Side of `subject/image_512.png`; in [64, crop_size]."""
    min_short_side: int = 128
    min_face_px: int = 64
    """Smallest accepted face box side, in input pixels."""
    max_pixels: int = 80_000_000
    """Refuse images with more pixels than this before decoding them (decompression bombs)."""
    face_index: Optional[int] = None
    """Which face to use when there are several (0 = largest); default: the largest, with a warning."""
    background: float = 0.5
    """Grey level that transparent pixels are composited onto."""
    crop_scale: float = 1.0
    """Multiplies the crop size derived from the landmarks (1.0 = the PanoHead/EG3D framing)."""
    segmenter: str = "selfie"
    """`selfie` (MediaPipe selfie segmentation) or `face_parsing` (needs models.face_parsing)."""
    neck_margin: float = 0.35
    """Mask below the chin is kept down to this fraction of the face height (neck), then cut."""
    detection_confidence: float = 0.5
    max_yaw: float = 45.0
    """Refuse faces turned further than this (degrees) from the camera: FaceMesh landmarks and the
    head pose become unreliable in profile."""


@dataclass
class ModelsConfig:
    """Where each model comes from: a Hugging Face hub id (looked up in the local cache) or a folder."""

    preset: str = "real"
    """`real` (the ids/folders below) or `tiny-random` (tiny random models built in code, for dry runs and tests)."""
    cache_dir: Optional[str] = None
    """Hugging Face cache to look in (default: $HF_HUB_CACHE, ~/.cache/huggingface/hub)."""
    allow_pickle: bool = False
    """Allow non-safetensors (pickle) weights. Off by default: a pickle can run code when loaded."""
    base: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    """SD1.5-family base for identity-aware score distillation (diffusers layout)."""
    controlnet_landmarks: str = "CrucibleAI/ControlNetMediaPipeFace"
    controlnet_normal: str = "lllyasviel/control_v11p_sd15_normalbae"
    controlnet_canny: str = "lllyasviel/control_v11p_sd15_canny"
    ip_adapter: str = "h94/IP-Adapter-FaceID"
    ip_adapter_weight: str = "ip-adapter-faceid-portrait_sd15.safetensors"
    texture_base: str = "SG161222/Realistic_Vision_V4.0_noVAE"
    texture_vae: str = "stabilityai/sd-vae-ft-mse"
    normal_sd: str = "xanderhuang/normal-adapted-sd1.5"
    depth_sd: str = "xanderhuang/depth-adapted-sd1.5"
    arcface: Optional[str] = None
    """ArcFace ONNX file (e.g. insightface buffalo_l `w600k_r50.onnx`); identity tokens need it."""
    face_parsing: Optional[str] = None
    """Face-parsing segmentation model (hub id or folder) for the foreground mask."""
    clip: Optional[str] = None
    """CLIP model (transformers layout; hub id or folder) for the CLIP-I metric of `run.py eval`."""
    lpips: Optional[str] = None
    """LPIPS (AlexNet) weight file for `run.py eval`: torchvision `features.N.*` plus LPIPS `linK.model.1.weight`."""
    normal_estimator: Optional[str] = None
    """Normal estimator for reference.source=estimator: a diffusers `MarigoldNormalsPipeline` folder/hub id
    (e.g. prs-eth/marigold-normals-v1-1); its frame is reference.estimator_normal_convention, its settings
    reference.estimator_*. See fitter/stages/reference/estimate_normals.py."""
    depth_estimator: Optional[str] = None
    """Depth estimator for reference.source=estimator: a transformers `AutoModelForDepthEstimation` folder/hub id
    (DPT, Depth Anything) with its image processor."""
    panohead: Optional[str] = None
    """PanoHead generator for init.kind=gan_inversion: the official network pickle (read without running
    its code) or its safetensors conversion (`python run.py convert-panohead CKPT.pkl OUT.safetensors`)."""


@dataclass
class ReferenceConfig:
    """Reference-view normal and depth maps (`subject/normal.png`, `subject/depth.png`)."""

    source: str = "generate"
    """`generate` (ID-aware normal/depth-adapted SD), `user` (the paths below, or run.py --normal/--depth),
    `estimator` (models.normal_estimator / models.depth_estimator) or `none` (use no maps, or maps put in
    subject/ by hand). See fitter/stages/reference/maps.py."""
    normal_path: Optional[str] = None
    """User normal map aligned with the ORIGINAL photo (same size); RGB = (n + 1) / 2, black = no data."""
    depth_path: Optional[str] = None
    """User depth map aligned with the ORIGINAL photo (same size); grey, larger = farther, any scale/shift."""
    user_normal_convention: str = "opengl"
    """Camera frame of the user normal map: `opengl` (x right, y up, z towards the viewer; our file
    convention) or `opencv` (x right, y down, z away from the viewer)."""
    size: int = 512
    """Side of the generated/warped maps (the reference crop is resized to it)."""
    steps: int = 30
    """DDIM steps of `generate`."""
    guidance_scale: float = 7.5
    """Classifier-free guidance of `generate` (the paper gives none: the SD ControlNet pipeline's default)."""
    normal_ip_scale: float = 0.5
    depth_ip_scale: float = 0.1
    """IP-Adapter-FaceID identity-token strength for the normal and the depth map."""
    negative_prompt: str = ""
    estimator_steps: Optional[int] = None
    """Denoising steps of the `estimator` normal model (null: the model's default_denoising_steps)."""
    estimator_ensemble: int = 1
    """Ensemble size of the `estimator` normal model (Marigold: 1, or 3 and more; 2 is no better than 1)."""
    estimator_resolution: Optional[int] = None
    """Processing resolution of the `estimator` normal model: a multiple of 8, 0 = the crop's size
    (null: the model's default_processing_resolution)."""
    estimator_normal_convention: str = "opengl"
    """Camera frame the normal estimator predicts in: `opengl` (x right, y up, z towards the viewer; Marigold)
    or `opencv` (x right, y down, z away from the viewer), converted like reference.user_normal_convention."""


@dataclass
class GanInversionConfig:
    """PanoHead inversion (init.kind=gan_inversion; see fitter/stages/init/gan.py). Defaults: the paper's."""

    projection_steps: int = 500
    projection_lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    w_reg: float = 1.0
    """Weight of ‖w − w_avg‖² during W-projection."""
    mse_weight: float = 0.1
    tuning_steps: int = 500
    tuning_lr: float = 3.0e-4
    w_avg_samples: int = 10000
    neural_rendering_resolution: int = 64
    lpips_weights: Optional[str] = None
    """LPIPS VGG16 weight file (see guidance/panohead/perceptual.py); unset: a structure-loss fallback."""
    mesh_resolution: int = 512
    mesh_level: float = 20.0
    """Marching-cubes level of the raw density σ."""
    sdf_resolution: int = 128
    normal_views: int = 40
    normal_pitch: float = -5.0
    normal_fov: float = 25.0
    normal_size: int = 512


@dataclass
class InitConfig:
    kind: str = "template"
    """`template` | `mesh` | `gan_inversion` | `multiview`."""
    mesh_path: Optional[str] = None
    up_axis: str = "+y"
    front_axis: str = "+z"
    max_mesh_faces: int = 30_000
    """init.kind=mesh: a mesh with more faces is decimated to this many, with a warning (the init keeps only an
    80³ distance grid of it, so finer detail is lost anyway; see fitter/stages/init/user_mesh.py). A file that declares
    more than 10,000,000 faces or is larger than 1 GB is refused unread."""
    gan: GanInversionConfig = field(default_factory=GanInversionConfig)
    views_dir: Optional[str] = None
    """init.kind=multiview: folder of views plus `cameras.json` (see fitter/stages/init/multiview/views.py), or images
    matched in file-name order to `views_preset`."""
    views_preset: str = "none"
    """`none` (read cameras.json) | `facelift` | `zero123pp` | `ring16` (fitter/stages/init/multiview/presets.py)."""
    preset_azimuth: float = 0.0
    """Azimuth (degrees) of the preset's input view; the preset's offsets are added to it."""
    preset_elevation: float = 0.0
    preset_radius: float = 4.6
    preset_fov_deg: float = 30.0
    views_size: int = 256
    """Rows of the view images the multi-view fit works at (resized)."""
    views_fit_steps: int = 200
    views_grid_resolution: int = 64
    """Cubes per axis of the multi-view fit's tet grid over the fitting box."""
    views_texture_resolution: int = 1024
    views_texture_max_faces: int = 20_000


@dataclass
class IsdSettings:
    """Identity-aware score distillation (see guidance/isd.py; the prompt is the top-level `prompt`)."""

    guidance_scale: float = 50.0
    t_range: tuple[float, float] = (0.02, 0.5)
    t_schedule: str = "constant"
    """`constant` or `linear` (t_max moves to `t_max_end` over `anneal_steps`)."""
    t_max_end: float = 0.5
    anneal_steps: int = 5000
    weighting: str = "sds"
    """`sds` (1 - alpha_bar_t), `uniform` or `fantasia3d`."""
    grad_clip: Optional[float] = None
    identity_tokens: bool = True
    """IP-Adapter-FaceID identity tokens (for |azimuth| < identity_max_azimuth)."""
    identity_max_azimuth: float = 70.0
    ip_scale: float = 1.0
    landmark_control: bool = True
    """MediaPipe-face landmark ControlNet on the projected 3D landmarks."""
    control_scale: float = 1.0
    view_prompts: bool = True
    negative_prompt: str = ""
    perp_neg: bool = False
    perp_neg_weight: float = 1.0
    vsd: bool = False
    lora_rank: int = 4
    lora_lr: float = 0.001
    image: str = "normal"
    """What the prior sees: `normal` (the rendered normal map, as in the paper) or `shaded` (Lambert)."""
    precision: str = "fp16"
    """fp16 | bf16 | fp32 on CUDA (CPU always runs fp32)."""


@dataclass
class GeometryConfig:
    """DMTet + hash-grid geometry. Loss weights are `lambda_*`; 0 switches a term off.

    Regulariser weights ramp linearly from their value to their `*_end` value over
    `regulariser_ramp` (start step, end step), as in the seed paper's schedule."""

    steps: int = 6000
    lr: float = 0.005
    betas: tuple[float, float] = (0.9, 0.99)
    grid_resolution: int = 256
    narrow_band: Optional[float] = 3.0
    """Half-width of the narrow band of tets in grid spacings; null for the dense grid."""
    band_rebuild_every: int = 500
    bound: float = 1.3
    """Half side of the fitting box in world units (the head spans about ±0.9, the neck cut -1.15)."""
    render_size: int = 512
    init_fit_steps: int = 1000
    """Phase 1a: steps of L1 regression of the SDF to the init's (`init/sdf.npz`), the warm start."""
    init_fit_lr: float = 0.01
    init_view_steps: int = 1000
    """Phase 1b (the paper's first phase): steps of normal loss to the init's normal views; 0 skips it.
    See fitter/stages/geometry/init_views.py."""
    init_view_lr: float = 0.005
    init_view_batch: int = 4
    """Views rendered per phase-1b step."""
    init_view_count: int = 40
    """Views rendered from `init/mesh.ply` when the init wrote no `init/normals/` (azimuth i·360/n)."""
    init_view_elevations: list[float] = field(default_factory=lambda: [-5.0, 30.0])
    """Elevations (degrees) the rendered ring cycles through: the second sees the top of the head."""
    init_view_radius: float = 4.0
    init_view_fov: float = 35.0
    lambda_init_normal: float = 1.0
    """Phase 1b: mean 1 − cos to the init's camera-space normals where both surfaces cover."""
    lambda_init_mask: float = 1.0
    """Phase 1b: MSE of the rendered silhouette to the init's."""
    hash_levels: int = 16
    hash_log2_table: int = 19
    hash_base_res: int = 16
    hash_finest_res: int = 4096
    mlp_hidden: int = 64
    mlp_layers: int = 2
    backend: str = "auto"
    """Hash-grid backend: auto | torch | tcnn."""
    render_backend: str = "auto"
    """Rasterizer backend: auto | torch | nvdiffrast."""
    lambda_isd: float = 1.0
    """Identity-aware score distillation weight; 0 turns the diffusion prior off."""
    isd: IsdSettings = field(default_factory=IsdSettings)
    guidance_every: int = 3
    """One guidance step in every `guidance_every` steps; the others are reference steps (paper: 2 + 1)."""
    guidance_size: int = 512
    """Render size of the random views the prior sees."""
    view_azimuth: tuple[float, float] = (-180.0, 180.0)
    view_elevation: tuple[float, float] = (-15.0, 45.0)
    view_radius: tuple[float, float] = (3.5, 4.5)
    view_fov: tuple[float, float] = (25.0, 45.0)
    lambda_mask: float = 100.0
    lambda_landmarks: float = 100.0
    lambda_landmark_depth: float = 100.0
    lambda_symmetry: float = 10.0
    lambda_prior: float = 10.0
    lambda_normal_consistency: float = 500.0
    lambda_normal_consistency_end: float = 10000.0
    lambda_laplacian: float = 1.0e5
    lambda_laplacian_end: float = 1.5e5
    regulariser_ramp: tuple[int, int] = (1000, 1001)
    lambda_ref_normal: float = 100.0
    lambda_ref_depth: float = 100.0
    lambda_ref_depth_pearson: float = 100.0
    sample_points: int = 4096
    """Points per step for the symmetry and prior terms."""
    prior_band: float = 0.1


@dataclass
class TextureConfig:
    resolution: int = 1024
    """Side of the UV texture in texels."""
    mode: str = "diffusion"
    """`diffusion` (progressive inpainting + refinement) or `projection` (photo projection + fills)."""
    max_faces: int = 50_000
    """The mesh is decimated to at most this many faces before the UV unwrap."""
    uv_padding: int = 4
    xatlas_timeout_s: float = 300.0
    min_cosine: float = 0.2
    """A texel takes photo colour only where its normal faces the reference camera at least this much."""
    feather: float = 0.25
    """Cosine range over which photo colour fades into the fill (hides grazing-angle seams); in (0, 2]."""
    depth_tolerance: float = 0.01
    """Relative depth difference within which a texel counts as seen (not occluded); in (0, 1]."""
    mirror: bool = True
    """Mirror the seen half of the face onto the hidden half."""
    hair_from_photo: bool = True
    """Texture the back of the head with the hair the photo shows at the top and sides (front-back mirror)."""
    hair_anchor_weight: float = 0.5
    """How strongly the unseen top/back is pulled towards the colour seen above the forehead; in [0, 10]."""
    # --- mode `diffusion`: progressive inpainting, then refinement (fitter/stages/texture/diffusion.py) ---
    trajectory_azimuths: list[float] = field(default_factory=lambda: list(INPAINT_TRAJECTORY_AZIMUTHS))
    """Inpainting views in order (degrees); paired with `trajectory_elevations`."""
    trajectory_elevations: list[float] = field(default_factory=lambda: list(INPAINT_TRAJECTORY_ELEVATIONS))
    trajectory_radius: float = 3.8
    trajectory_fov_deg: float = 30.0
    coverage_threshold: float = 0.2
    """Texels covered less than this (photo confidence or view cosine) are generated."""
    crop_scale: float = 1.1
    """Each inpainting view is cropped to its silhouette box times this."""
    gen_size: int = 512
    t_start: int = 950
    ddim_steps: int = 20
    guidance_scale: float = 10.0
    min_view_cosine: float = 0.0
    """Generated pixels are back-projected only where the view cosine is above this."""
    erode_px: int = 3
    """Silhouette erosion (pixels at gen_size) before back-projection."""
    refine_steps: int = 400
    refine_t_range: tuple[int, int] = (50, 200)
    refine_render_size: int = 512
    lambda_sds_mse: float = 0.1
    lambda_perceptual: float = 50.0
    lambda_ref_l1: float = 1000.0
    lambda_tv: float = 5.0e-4
    lr: float = 0.02
    lpips_weights: Optional[str] = None
    """LPIPS VGG16 weight file for refinement; unset: the SSIM/gradient fallback (fitter/stages/texture/refine_losses.py)."""
    inpaint_model: Optional[str] = None
    """SD1.5 inpainting checkpoint (diffusers folder or hub id with `unet/`); unset: blended-latent inpainting with the base UNet."""
    sr_model: Optional[str] = None
    """Super-resolution ONNX model applied to the final texture ((1, 3, H, W) in [0, 1] → (1, 3, sH, sW)); unset: none."""
    identity: bool = True
    """Identity tokens (IP-Adapter-FaceID) when an ArcFace embedding is available."""
    precision: str = "fp16"
    """fp16 | bf16 | fp32 for the texture diffusion models on CUDA (CPU always runs fp32)."""
    ip_scale: float = 1.0
    control_scale: float = 1.0
    identity_max_azimuth: float = 70.0
    prompt_suffix: str = ", detailed skin and hair texture"
    """Appended to `prompt` for texturing."""
    negative_prompt: str = ""


@dataclass
class FitConfig:
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)


@dataclass
class ExportConfig:
    view_size: int = 512
    """Side of the images in `views/` (white background, same radius and fov for every view)."""
    view_radius: float = 4.6
    """Camera distance of the views and the turntable (world units); in (1.5, 100]."""
    view_fov_deg: float = 30.0
    turntable_frames: int = 60
    turntable_size: int = 512
    turntable_fps: int = 30
    turntable_elevation_deg: float = 5.0
    report: bool = True
    """Write `report.html` (viewer, turntable, views, loss curves, metrics, config) at the end of the run."""


@dataclass
class RunConfig:
    seed: int = 0
    """Seed of every random draw; in [0, 2**63 - 1]."""
    device: str = "auto"
    """`auto` (CUDA when available), `cpu` or `cuda`."""
    checkpoint_every: int = 200
    max_nan_rollbacks: int = 5
    tensorboard: bool = False
    dry_run: Optional[bool] = None
    """Scale the schedule down to a CPU dry run (see fitter/dry_run.py). Default: on with
    models.preset=tiny-random, off otherwise."""
    deterministic: bool = True
    """Use torch's deterministic kernels. Several CPU backward passes (index_put with accumulate)
    otherwise add in a thread-dependent order, so two runs, or a run and its resume, drift apart."""


@dataclass
class Config:
    prompt: str = "a DSLR portrait photo of a person, high detail"
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    init: InitConfig = field(default_factory=InitConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _one_line(exc: Exception, limit: int = 240) -> str:
    text = str(exc).strip().splitlines()
    head = text[0] if text else type(exc).__name__
    key = getattr(exc, "full_key", None)
    if key and key not in head:
        head = f"{key}: {head}"
    return head if len(head) <= limit else head[: limit - 3] + "..."


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> DictConfig:
    """Read a YAML config, merging the file it names in `extends` (relative to itself) first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"config {path} extends itself")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.suffix.lower() not in CONFIG_SUFFIXES:  # and never echo a foreign file's contents in an error
        named_by = f" (named by `extends:` in {seen[-1]})" if seen else ""
        raise ConfigError(f"config {path}{named_by} is not a .yaml/.yml file")
    try:
        data = OmegaConf.load(path)
    except Exception as exc:  # yaml errors carry multi-line messages
        raise ConfigError(f"cannot parse config {path}: {_one_line(exc)}") from None
    if not isinstance(data, DictConfig):
        raise ConfigError(f"config {path} must be a mapping")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = _read_yaml(path.parent / str(parent), seen + (path,))
    return OmegaConf.merge(base, data)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML <- dot-list overrides, type-checked; raises ConfigError."""
    schema = OmegaConf.structured(Config)
    try:
        merged = schema
        if path is not None:
            merged = OmegaConf.merge(merged, _read_yaml(Path(path)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not key.path=value")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None
    validate(cfg)
    return cfg


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"bad config: {key} {why}")


INT64 = (-(2**63), 2**63 - 1)


def _check_numbers(node: Any, prefix: str = "") -> None:
    """Every float setting is finite (inf and nan would pass most range checks and give black
    textures or blank views) and every integer fits 64 bits."""
    for f in fields(node):
        value, key = getattr(node, f.name), prefix + f.name
        if is_dataclass(value):
            _check_numbers(value, key + ".")
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, float):
                _check(math.isfinite(item), key, "must be a finite number")
            elif isinstance(item, int) and not isinstance(item, bool):
                _check(INT64[0] <= item <= INT64[1], key, "must fit in 64 bits")


def validate(cfg: Config) -> None:
    """Range checks that types alone cannot express."""
    _check_numbers(cfg)
    i = cfg.intake
    _check(128 <= i.crop_size <= MAX_CROP, "intake.crop_size", f"must be in [128, {MAX_CROP}]")
    _check(64 <= i.small_size <= i.crop_size, "intake.small_size", "must be in [64, intake.crop_size]")
    _check(16 <= i.min_short_side <= 100_000, "intake.min_short_side", "must be in [16, 100000]")
    _check(16 <= i.min_face_px <= 100_000, "intake.min_face_px", "must be in [16, 100000]")
    _check(0 < i.max_pixels <= MAX_PIXELS, "intake.max_pixels", f"must be in [1, {MAX_PIXELS}]")
    _check(0.0 <= i.neck_margin <= 3.0, "intake.neck_margin", "must be in [0, 3]")
    _check(0.0 <= i.background <= 1.0, "intake.background", "must be in [0, 1]")
    _check(0.5 <= i.crop_scale <= 3.0, "intake.crop_scale", "must be in [0.5, 3]")
    _check(0.0 < i.detection_confidence < 1.0, "intake.detection_confidence", "must be in (0, 1)")
    _check(0.0 < i.max_yaw <= 90.0, "intake.max_yaw", "must be in (0, 90]")
    _check(i.face_index is None or i.face_index >= 0, "intake.face_index", "must be >= 0")
    _check(i.segmenter in ("selfie", "face_parsing"), "intake.segmenter", "must be selfie or face_parsing")
    _check(i.segmenter != "face_parsing" or bool(cfg.models.face_parsing), "intake.segmenter", "face_parsing needs models.face_parsing")
    _check(cfg.models.preset in ("real", "tiny-random"), "models.preset", "must be real or tiny-random")
    _check_reference(cfg)
    _check(cfg.fit.texture.mode in ("diffusion", "projection"), "fit.texture.mode", "must be diffusion or projection")
    g = cfg.fit.geometry
    _check(g.steps >= 0 and g.init_fit_steps >= 0, "fit.geometry.steps", "and init_fit_steps must be >= 0")
    _check(all(0.0 <= b < 1.0 for b in g.betas), "fit.geometry.betas", "must be in [0, 1)")
    _check(g.bound > 0 and g.prior_band > 0, "fit.geometry.bound", "and prior_band must be positive")
    _check(g.band_rebuild_every >= 1 and g.sample_points >= 1, "fit.geometry.band_rebuild_every", "and sample_points must be >= 1")
    _check(g.mlp_hidden >= 1 and g.mlp_layers >= 1, "fit.geometry.mlp_hidden", "and mlp_layers must be >= 1")
    _check(1 <= g.hash_base_res <= g.hash_finest_res, "fit.geometry.hash_base_res", "must be in [1, hash_finest_res]")
    _check(g.lr > 0 and g.init_fit_lr > 0, "fit.geometry.lr", "and init_fit_lr must be positive")
    _check(g.init_view_steps >= 0 and g.init_view_lr > 0, "fit.geometry.init_view_steps", "must be >= 0 with init_view_lr positive")
    _check(g.init_view_batch >= 1 and g.init_view_count >= 1, "fit.geometry.init_view_batch", "and init_view_count must be >= 1")
    _check(len(g.init_view_elevations) >= 1 and all(-89.0 <= e <= 89.0 for e in g.init_view_elevations),
           "fit.geometry.init_view_elevations", "must be one or more angles in [-89, 89]")
    _check(g.init_view_radius > g.bound and 5.0 <= g.init_view_fov <= 120.0, "fit.geometry.init_view_radius",
           "must exceed fit.geometry.bound, with init_view_fov in [5, 120]")
    _check(16 <= g.grid_resolution <= 1024, "fit.geometry.grid_resolution", "must be in [16, 1024]")
    _check(g.narrow_band is None or g.narrow_band >= 1.0, "fit.geometry.narrow_band", "must be >= 1 grid spacing or null")
    _check(g.grid_resolution <= 160 or g.narrow_band is not None, "fit.geometry.grid_resolution",
           "above 160 needs fit.geometry.narrow_band (a dense grid that fine does not fit in memory)")
    _check(32 <= g.render_size <= 4096, "fit.geometry.render_size", "must be in [32, 4096]")
    _check(1 <= g.hash_levels <= 32 and 10 <= g.hash_log2_table <= 24, "fit.geometry.hash_levels", "must be in [1, 32] with hash_log2_table in [10, 24]")
    _check(g.backend in ("auto", "torch", "tcnn"), "fit.geometry.backend", "must be auto, torch or tcnn")
    _check(g.render_backend in ("auto", "torch", "nvdiffrast"), "fit.geometry.render_backend", "must be auto, torch or nvdiffrast")
    for name, value in vars(g).items():
        if name.startswith("lambda_"):
            _check(value >= 0, f"fit.geometry.{name}", "must be >= 0")
    _check(0 <= g.regulariser_ramp[0] <= g.regulariser_ramp[1], "fit.geometry.regulariser_ramp", "must be (start, end) with start <= end")
    _check(g.guidance_every >= 1 and 32 <= g.guidance_size <= 2048, "fit.geometry.guidance_every", "must be >= 1 with guidance_size in [32, 2048]")
    _check(g.view_radius[0] > 1.5 and g.view_radius[0] <= g.view_radius[1], "fit.geometry.view_radius", "must be (min, max) with min > 1.5")
    _check(5 <= g.view_fov[0] <= g.view_fov[1] <= 120, "fit.geometry.view_fov", "must be (min, max) within [5, 120]")
    i = g.isd
    _check(0.0 <= i.t_range[0] <= i.t_range[1] <= 1.0 and 0.0 <= i.t_max_end <= 1.0, "fit.geometry.isd.t_range", "must be within [0, 1]")
    _check(i.t_schedule in ("constant", "linear"), "fit.geometry.isd.t_schedule", "must be constant or linear")
    _check(i.weighting in ("sds", "uniform", "fantasia3d"), "fit.geometry.isd.weighting", "must be sds, uniform or fantasia3d")
    _check(i.guidance_scale >= 0 and i.ip_scale >= 0 and i.control_scale >= 0, "fit.geometry.isd.guidance_scale", "and the scales must be >= 0")
    _check(i.image in ("normal", "shaded"), "fit.geometry.isd.image", "must be normal or shaded")
    _check(i.precision in ("fp16", "bf16", "fp32"), "fit.geometry.isd.precision", "must be fp16, bf16 or fp32")
    _check(i.anneal_steps >= 1 and i.perp_neg_weight >= 0, "fit.geometry.isd.anneal_steps", "must be >= 1 with perp_neg_weight >= 0")
    _check(1 <= i.lora_rank <= 256 and i.lora_lr > 0, "fit.geometry.isd.lora_rank", "must be in [1, 256] with lora_lr positive")
    _check(i.grad_clip is None or i.grad_clip > 0, "fit.geometry.isd.grad_clip", "must be positive or null")
    _check(0.0 <= i.identity_max_azimuth <= 180.0, "fit.geometry.isd.identity_max_azimuth", "must be in [0, 180]")
    t = cfg.fit.texture
    _check(64 <= t.resolution <= 8192, "fit.texture.resolution", "must be in [64, 8192]")
    _check(t.max_faces >= 1000, "fit.texture.max_faces", "must be >= 1000")
    _check(-1.0 <= t.min_cosine < 1.0, "fit.texture.min_cosine", "must be in [-1, 1)")
    _check(0 < t.feather <= 2.0, "fit.texture.feather", "must be in (0, 2]")
    _check(0 < t.depth_tolerance <= 1.0, "fit.texture.depth_tolerance", "must be in (0, 1]")
    _check(0 <= t.uv_padding <= 64 and 0 < t.xatlas_timeout_s <= 86400, "fit.texture.uv_padding",
           "must be in [0, 64] with xatlas_timeout_s in (0, 86400]")
    _check(0 <= t.hair_anchor_weight <= 10.0, "fit.texture.hair_anchor_weight", "must be in [0, 10]")
    _check_texture_diffusion(t)
    e = cfg.export
    _check(64 <= e.view_size <= 4096 and e.view_size % 2 == 0, "export.view_size", "must be even and in [64, 4096]")
    _check(64 <= e.turntable_size <= 4096 and e.turntable_size % 2 == 0, "export.turntable_size", "must be even and in [64, 4096]")
    _check(e.turntable_frames >= 1 and e.turntable_fps >= 1, "export.turntable_frames", "and turntable_fps must be >= 1")
    _check(1.5 < e.view_radius <= MAX_RADIUS and 5.0 <= e.view_fov_deg <= 120.0, "export.view_radius",
           f"must be in (1.5, {MAX_RADIUS:g}] with view_fov_deg in [5, 120]")
    _check(-89.0 <= e.turntable_elevation_deg <= 89.0, "export.turntable_elevation_deg", "must be in [-89, 89]")
    _check(cfg.init.kind in ("template", "mesh", "gan_inversion", "multiview"), "init.kind", "must be one of template, mesh, gan_inversion, multiview")
    _check_multiview(cfg.init)
    _check_axes(cfg.init)
    _check(cfg.init.kind != "mesh" or bool(cfg.init.mesh_path), "init.mesh_path", "is required with init.kind=mesh")
    _check(1000 <= cfg.init.max_mesh_faces <= 10_000_000, "init.max_mesh_faces", "must be in [1000, 10000000]")
    _check_gan(cfg.init.gan)
    _check(cfg.run.device in ("auto", "cpu", "cuda"), "run.device", "must be auto, cpu or cuda")
    _check(0 <= cfg.run.seed <= INT64[1], "run.seed", f"must be in [0, {INT64[1]}]")
    _check(cfg.run.checkpoint_every > 0, "run.checkpoint_every", "must be positive")
    _check(cfg.run.max_nan_rollbacks >= 0, "run.max_nan_rollbacks", "must be >= 0")


def _check_reference(cfg: Config) -> None:
    r = cfg.reference
    _check(r.source in ("generate", "user", "estimator", "none"), "reference.source", "must be generate, user, estimator or none")
    _check(r.source != "user" or bool(r.normal_path or r.depth_path), "reference.source", "user needs reference.normal_path or reference.depth_path")
    _check(r.source != "estimator" or bool(cfg.models.normal_estimator or cfg.models.depth_estimator),
           "reference.source", "estimator needs models.normal_estimator or models.depth_estimator")
    _check(r.user_normal_convention in ("opengl", "opencv"), "reference.user_normal_convention", "must be opengl or opencv")
    _check(r.estimator_normal_convention in ("opengl", "opencv"), "reference.estimator_normal_convention", "must be opengl or opencv")
    _check(r.estimator_steps is None or 1 <= r.estimator_steps <= 1000, "reference.estimator_steps", "must be in [1, 1000] or null")
    _check(1 <= r.estimator_ensemble <= 64, "reference.estimator_ensemble", "must be in [1, 64]")
    _check(r.estimator_resolution is None or (0 <= r.estimator_resolution <= 4096 and r.estimator_resolution % 8 == 0),
           "reference.estimator_resolution", "must be a multiple of 8 in [0, 4096] or null")
    _check(32 <= r.size <= 2048 and r.size % 32 == 0, "reference.size", "must be a multiple of 32 in [32, 2048]")
    _check(1 <= r.steps <= 1000, "reference.steps", "must be in [1, 1000]")
    _check(r.guidance_scale >= 0 and r.normal_ip_scale >= 0 and r.depth_ip_scale >= 0, "reference.guidance_scale",
           "and the ip scales must be >= 0")


def _check_texture_diffusion(t: TextureConfig) -> None:
    _check(len(t.trajectory_azimuths) == len(t.trajectory_elevations) >= 1, "fit.texture.trajectory_azimuths",
           "and trajectory_elevations must be non-empty and of equal length")
    _check(all(-89.0 <= e <= 89.0 for e in t.trajectory_elevations), "fit.texture.trajectory_elevations", "must be in [-89, 89]")
    _check(t.trajectory_radius > 1.5 and 5.0 <= t.trajectory_fov_deg <= 120.0, "fit.texture.trajectory_radius",
           "must be > 1.5 with trajectory_fov_deg in [5, 120]")
    _check(0.0 < t.coverage_threshold <= 1.0, "fit.texture.coverage_threshold", "must be in (0, 1]")
    _check(1.0 <= t.crop_scale <= 2.0, "fit.texture.crop_scale", "must be in [1, 2]")
    _check(32 <= t.gen_size <= 2048 and t.gen_size % 8 == 0, "fit.texture.gen_size", "must be a multiple of 8 in [32, 2048]")
    _check(0 < t.t_start < 1000 and 1 <= t.ddim_steps <= 1000, "fit.texture.t_start", "must be in (0, 1000) with ddim_steps in [1, 1000]")
    _check(t.guidance_scale >= 0 and t.ip_scale >= 0 and t.control_scale >= 0, "fit.texture.guidance_scale",
           "ip_scale and control_scale must be >= 0")
    _check(-1.0 <= t.min_view_cosine < 1.0 and t.erode_px >= 0, "fit.texture.min_view_cosine", "must be in [-1, 1) with erode_px >= 0")
    _check(t.refine_steps >= 0 and 32 <= t.refine_render_size <= 4096, "fit.texture.refine_steps", "must be >= 0 with refine_render_size in [32, 4096]")
    _check(0 <= t.refine_t_range[0] < t.refine_t_range[1] <= 1000, "fit.texture.refine_t_range", "must be (low, high) with 0 <= low < high <= 1000")
    for name in ("lambda_sds_mse", "lambda_perceptual", "lambda_ref_l1", "lambda_tv"):
        _check(getattr(t, name) >= 0, f"fit.texture.{name}", "must be >= 0")
    _check(t.lr > 0, "fit.texture.lr", "must be positive")
    _check(0.0 <= t.identity_max_azimuth <= 180.0, "fit.texture.identity_max_azimuth", "must be in [0, 180]")
    _check(t.precision in ("fp16", "bf16", "fp32"), "fit.texture.precision", "must be fp16, bf16 or fp32")


def _check_multiview(init: InitConfig) -> None:
    _check(init.kind != "multiview" or bool(init.views_dir), "init.views_dir", "is required with init.kind=multiview")
    _check(init.views_preset in ("none", "facelift", "zero123pp", "ring16"), "init.views_preset", "must be none, facelift, zero123pp or ring16")
    _check(init.preset_radius > 0 and 1.0 <= init.preset_fov_deg <= 150.0, "init.preset_radius", "must be positive with preset_fov_deg in [1, 150]")
    _check(-89.0 <= init.preset_elevation <= 89.0, "init.preset_elevation", "must be in [-89, 89]")
    _check(32 <= init.views_size <= 2048 and init.views_fit_steps >= 0, "init.views_size", "must be in [32, 2048] with views_fit_steps >= 0")
    _check(16 <= init.views_grid_resolution <= 128, "init.views_grid_resolution", "must be in [16, 128]")
    _check(64 <= init.views_texture_resolution <= 8192 and init.views_texture_max_faces >= 1000,
           "init.views_texture_resolution", "must be in [64, 8192] with views_texture_max_faces >= 1000")


def _check_axes(init: InitConfig) -> None:
    from representations.mesh.axes import axis_vector

    try:
        up, front = axis_vector(init.up_axis), axis_vector(init.front_axis)
    except ValueError as exc:
        raise ConfigError(f"bad config: init.up_axis/front_axis: {exc}") from None
    _check(abs(float(up @ front)) < 0.5, "init.front_axis", "must be perpendicular to init.up_axis")


def _check_gan(gan: GanInversionConfig) -> None:
    _check(gan.projection_steps >= 0 and gan.tuning_steps >= 0, "init.gan.projection_steps", "and tuning_steps must be >= 0")
    _check(gan.projection_lr > 0 and gan.tuning_lr > 0, "init.gan.projection_lr", "and tuning_lr must be positive")
    _check(0 <= gan.lr_rampup < 1 and 0 <= gan.lr_rampdown <= 1, "init.gan.lr_rampup", "and lr_rampdown must be fractions of the steps")
    _check(gan.w_reg >= 0 and gan.mse_weight >= 0 and gan.w_avg_samples >= 1, "init.gan.w_reg", "and mse_weight must be >= 0, w_avg_samples >= 1")
    _check(8 <= gan.neural_rendering_resolution <= 512, "init.gan.neural_rendering_resolution", "must be in [8, 512]")
    _check(16 <= gan.mesh_resolution <= 1024 and 16 <= gan.sdf_resolution <= 512, "init.gan.mesh_resolution", "must be in [16, 1024] (sdf_resolution in [16, 512])")
    _check(gan.normal_views >= 1 and 32 <= gan.normal_size <= 4096, "init.gan.normal_views", "must be >= 1 with normal_size in [32, 4096]")
    _check(gan.mesh_level > 0, "init.gan.mesh_level", "must be positive (a density level)")
    _check(5.0 <= gan.normal_fov <= 120.0 and -89.0 <= gan.normal_pitch <= 89.0, "init.gan.normal_fov", "must be in [5, 120] with normal_pitch in [-89, 89]")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def as_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
