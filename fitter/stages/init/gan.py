"""Init kind `gan_inversion`: invert the PanoHead generator on the subject photo, then hand its
density to the geometry stage.

1. Target: the subject's crop at the generator's output resolution (`Subject.image`), in the subject's
   reference camera (as a PanoHead camera label, `guidance.panohead.camera`).
2. W-projection (StyleGAN2 projector schedule): w starts at the average w of `w_avg_samples`
   mapped latents; Adam, lr ramped up over the first `lr_rampup` and cosine-down over the last
   `lr_rampdown` of the steps; loss mse_weight·MSE + perceptual + w_reg·‖w − w_avg‖².
3. Pivotal tuning: w fixed, every generator weight tuned with Adam at `tuning_lr`; loss
   mse_weight·MSE + perceptual. The perceptual term is LPIPS(VGG16 at 256²) when `lpips_weights`
   is set, else the structure-loss fallback (`guidance.panohead.perceptual`).
4. Outputs (our world = PanoHead world × s, s = `world_scale(reference camera)`):
   `init/mesh.ply` — marching cubes of the raw density σ at `mesh_level` on a `mesh_resolution`³
   grid over PanoHead's box, largest component; `init/sdf.npz` — a GridSDF on our box whose inside
   is {σ > level}: signed Euclidean distance transform of that occupancy (half a voxel towards the
   boundary, in world units), a true distance the geometry stage's SDF fit can follow; and
   `init/normals/NNN.png` with `init/normals/cameras.json` — camera-space (OpenGL) normals of the
   mesh, RGB = (n + 1)/2, black background, `normal_views` views at yaw i·360/n, elevation
   `normal_pitch`, field of view `normal_fov`, radius 2.7·s (PanoHead's camera orbit).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import distance_transform_edt
from skimage.measure import marching_cubes
from torch import Tensor

from common import atomic
from common.errors import StopRequested, UserError
from fitter.context import RunContext
from fitter.stages.init.sdf_grid import GridSDF
from fitter.subject import Subject
from guidance.panohead import PanoHeadGenerator, camera_label, load_generator, world_scale
from guidance.panohead.camera import PANOHEAD_RADIUS
from guidance.panohead.errors import CheckpointError
from guidance.panohead.perceptual import perceptual_loss
from guidance.weights import WeightFileError
from representations.cameras import Camera
from representations.mesh import Mesh, keep_largest_component
from representations.render import default_rasterizer

log = logging.getLogger("headfit")
CHUNK = 1 << 18


def ramped_lr(t: float, lr: float, rampup: float, rampdown: float) -> float:
    """StyleGAN2 projector schedule at progress t in [0, 1): linear warm-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * (min(1.0, t / rampup) if rampup > 0 else 1.0)


def target_image(subject: Subject, size: int) -> Tensor:
    """The subject's crop as (1, 3, size, size) in [-1, 1]."""
    image = subject.image_uint8(size, resample=Image.LANCZOS)
    return torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR (dB) of images in [-1, 1] (peak-to-peak 2)."""
    return float(10 * torch.log10(4.0 / F.mse_loss(a, b).clamp_min(1e-12)))


def average_w(generator: PanoHeadGenerator, c: Tensor, samples: int, seed: int = 0) -> Tensor:
    """(1, w_dim) mean of the mapped w of `samples` random z in camera c (1, 25)."""
    z = torch.randn(samples, generator.cfg.z_dim, generator=torch.Generator().manual_seed(seed)).to(c.device)
    with torch.no_grad():
        return generator.mapping(z, c.expand(samples, -1))[:, 0].mean(0, keepdim=True)


def _render(generator: PanoHeadGenerator, w: Tensor, c: Tensor) -> Tensor:
    return generator.synthesis(w[:, None].expand(-1, generator.num_ws, -1), c)["image"]


def _image_loss(image: Tensor, target: Tensor, perceptual: Callable, mse_weight: float) -> Tensor:
    return mse_weight * F.mse_loss(image, target) + perceptual(image, target).mean()


def project_w(generator: PanoHeadGenerator, target: Tensor, c: Tensor, w_avg: Tensor, gan, perceptual: Callable,
              should_stop: Callable[[], bool] = lambda: False) -> Tensor:
    """W-projection: the (1, w_dim) latent whose rendering in camera c best matches target (1, 3, R, R)."""
    w = w_avg.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([w], lr=gan.projection_lr, betas=(0.9, 0.999))
    for step in range(gan.projection_steps):
        for group in optimizer.param_groups:
            group["lr"] = ramped_lr(step / gan.projection_steps, gan.projection_lr, gan.lr_rampup, gan.lr_rampdown)
        loss = _image_loss(_render(generator, w, c), target, perceptual, gan.mse_weight) + gan.w_reg * (w - w_avg).square().sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _progress("projection", step, gan.projection_steps, loss.item(), should_stop)
    return w.detach()


def pivotal_tuning(generator: PanoHeadGenerator, target: Tensor, c: Tensor, w: Tensor, gan, perceptual: Callable,
                   should_stop: Callable[[], bool] = lambda: False) -> PanoHeadGenerator:
    """A copy of the generator tuned so that its rendering of the pivot w matches the target."""
    tuned = copy.deepcopy(generator).requires_grad_(True)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=gan.tuning_lr)
    for step in range(gan.tuning_steps):
        loss = _image_loss(_render(tuned, w, c), target, perceptual, gan.mse_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _progress("pivotal tuning", step, gan.tuning_steps, loss.item(), should_stop)
    return tuned.eval().requires_grad_(False)


def _progress(phase: str, step: int, steps: int, loss: float, should_stop: Callable[[], bool]) -> None:
    if step % 100 == 0 or step == steps - 1:
        log.info("init: %s step %d/%d loss %.4f", phase, step + 1, steps, loss)
    if should_stop():
        raise StopRequested(f"init stopped during {phase} at step {step}")


def density_at(generator: PanoHeadGenerator, planes: Tensor, points: Tensor) -> Tensor:
    """Raw σ (M,) at PanoHead-world points (M, 3), evaluated in chunks."""
    with torch.no_grad():
        return torch.cat([generator.density(planes, chunk.to(planes.device)[None])[0].cpu() for chunk in points.split(CHUNK)])


def _cube(resolution: int, half: float) -> Tensor:
    axis = torch.linspace(-half, half, resolution)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def density_mesh(generator: PanoHeadGenerator, planes: Tensor, resolution: int, level: float, scale: float) -> Mesh:
    """Marching cubes of σ = level over PanoHead's box, in our world (× scale), largest component."""
    half = generator.cfg.render_options().box_warp / 2
    sigma = density_at(generator, planes, _cube(resolution, half)).reshape(resolution, resolution, resolution).numpy()
    if not (sigma.min() < level < sigma.max()):
        raise UserError(f"the inverted head has no surface at init.gan.mesh_level={level} (density spans {sigma.min():.1f}..{sigma.max():.1f})")
    spacing = 2 * half / (resolution - 1)
    verts, faces, _, _ = marching_cubes(sigma, level=level, spacing=(spacing,) * 3)
    verts = (verts - half) * scale
    faces = faces[:, ::-1].copy()  # σ grows inwards: flip so faces point outwards
    return keep_largest_component(Mesh(torch.as_tensor(verts, dtype=torch.float32), torch.as_tensor(faces, dtype=torch.long)))


def density_sdf(generator: PanoHeadGenerator, planes: Tensor, resolution: int, bound: float, level: float, scale: float) -> GridSDF:
    """GridSDF on our box [-bound, bound]³: signed distance to the region σ > level (negative inside)."""
    sigma = density_at(generator, planes, _cube(resolution, bound) / scale).reshape(resolution, resolution, resolution).numpy()
    inside = sigma > level
    if not inside.any():
        raise UserError(f"the inverted head has no voxel above init.gan.mesh_level={level} inside the fitting box")
    spacing = 2 * bound / (resolution - 1)
    signed = np.where(inside, -(distance_transform_edt(inside) - 0.5), distance_transform_edt(~inside) - 0.5) * spacing
    return GridSDF(torch.as_tensor(signed, dtype=torch.float32), bound)


def normal_view_cameras(gan, scale: float) -> list[Camera]:
    """The orbit of normal views: yaw i·360/n (subject's left at +), elevation `normal_pitch`."""
    return [Camera.orbit(360.0 * i / gan.normal_views, gan.normal_pitch, PANOHEAD_RADIUS * scale, gan.normal_fov, gan.normal_size)
            for i in range(gan.normal_views)]


def write_normal_views(mesh: Mesh, cameras: list[Camera], folder: Path, backend: str = "auto") -> None:
    """init/normals/NNN.png (camera-space normals, RGB = (n + 1)/2, black outside) and cameras.json."""
    folder.mkdir(parents=True, exist_ok=True)
    rasterizer = default_rasterizer(backend)
    entries = []
    for index, camera in enumerate(cameras):
        with torch.no_grad():
            out = rasterizer.render(mesh.verts, mesh.faces, camera, ("mask", "normal_cam"))
        rgb = ((out["normal_cam"] + 1) / 2 * (out["mask"] > 0.5)).clamp(0, 1)
        name = f"{index:03d}.png"
        atomic.write_png(folder / name, rgb.cpu().numpy())
        entries.append({"file": name, "camera": camera.to_dict()})
    atomic.write_json(folder / "cameras.json", {"normal_frame": "camera (OpenGL: x right, y up, z towards the viewer); RGB = (n + 1) / 2",
                                                "views": entries})


def invert(ctx: RunContext, generator: PanoHeadGenerator) -> tuple[PanoHeadGenerator, Tensor, Tensor, dict]:
    """Projection then pivotal tuning on the subject photo; returns the tuned generator, the pivot
    ws (1, num_ws, w_dim), the camera label (1, 25) and a summary."""
    gan = ctx.cfg.init.gan
    reference = ctx.subject.camera()
    scale = world_scale(reference)
    c = camera_label(reference, scale)[None].to(ctx.device)
    target = target_image(ctx.subject, generator.cfg.img_resolution).to(ctx.device)
    perceptual = perceptual_loss(gan.lpips_weights, ctx.cfg.models.pickle_allowed("lpips")).to(ctx.device)
    stop = lambda: ctx.stop.requested  # noqa: E731
    w_avg = average_w(generator, c, gan.w_avg_samples, ctx.cfg.run.seed)
    w = project_w(generator, target, c, w_avg, gan, perceptual, stop)
    with torch.no_grad():
        projected = psnr(_render(generator, w, c), target)
    tuned = pivotal_tuning(generator, target, c, w, gan, perceptual, stop)
    with torch.no_grad():
        tuned_psnr = psnr(_render(tuned, w, c), target)
    log.info("init: PanoHead inversion PSNR %.2f dB after projection, %.2f dB after pivotal tuning", projected, tuned_psnr)
    summary = {"world_scale": scale, "psnr_projection": projected, "psnr_tuned": tuned_psnr,
               "perceptual": "lpips_vgg16" if gan.lpips_weights else "structure_fallback"}
    return tuned, w[:, None].expand(-1, generator.num_ws, -1), c, summary


def load_checkpoint_generator(path: str | Path) -> PanoHeadGenerator:
    """The generator of `models.panohead`; any problem with the file is one line (a MissingModelError)."""
    try:
        return load_generator(path)
    except (FileNotFoundError, WeightFileError) as exc:
        raise CheckpointError(f"cannot use models.panohead={path}: {exc}") from None


def gan_inversion_init(ctx: RunContext, out: Path, bound: float) -> tuple[GridSDF, Mesh, dict]:
    """The `gan_inversion` init: the SDF and surface handed to the geometry stage, plus init.json info;
    writes the normal views and the pivot (init/pivot.pt: ws and the camera label)."""
    gan = ctx.cfg.init.gan
    if not ctx.cfg.models.panohead:
        raise UserError("init.kind=gan_inversion needs models.panohead (the PanoHead checkpoint, .pkl or converted .safetensors)")
    torch.manual_seed(ctx.cfg.run.seed)
    generator = load_checkpoint_generator(ctx.cfg.models.panohead).to(ctx.device)
    generator.neural_rendering_resolution = gan.neural_rendering_resolution
    tuned, ws, c, summary = invert(ctx, generator)
    scale = summary["world_scale"]
    with torch.no_grad():
        planes = tuned.planes(ws)
    mesh = density_mesh(tuned, planes, gan.mesh_resolution, gan.mesh_level, scale)
    sdf = density_sdf(tuned, planes, gan.sdf_resolution, bound, gan.mesh_level, scale)
    write_normal_views(mesh, normal_view_cameras(gan, scale), out / "normals", ctx.cfg.fit.geometry.render_backend)
    atomic.write_torch(out / "pivot.pt", {"ws": ws.cpu(), "c": c.cpu()})
    info = {"kind": "gan_inversion", "checkpoint": str(ctx.cfg.models.panohead), "mesh_level": gan.mesh_level,
            "mesh_resolution": gan.mesh_resolution, "normal_views": gan.normal_views, **summary}
    return sdf, mesh, info
