"""Stage `geometry`: DMTet whose SDF and deformation come from a hash-grid MLP.

Phase 1 fits the SDF to the init (`init/`): 1a regresses it to `init/sdf.npz`, 1b pulls its normal
maps to the init's normal views (`fitter/stages/geometry/init_views.py`). Phase 2 (`steps`) sculpts it
with the reference-view losses (mask, landmarks, reference normal/depth when `reference/normal.png` /
`depth.png` exist), a left-right symmetry prior for the unseen side, a prior towards the init where
nothing else decides, with init.kind=parametric a pull to the fitted parametric skin where the photo sees
little (`lambda_prior_surface`, points from `init/prior_surface.npz`), and mesh regularisers. The final mesh keeps
fine detail only where the photo sees it (`fitter/stages/geometry/unseen.py`, `smooth_unseen_*`). Writes
`geometry/mesh.ply`, `geometry/geometry.json` and the checkpoints `geometry/init_views.pt` (phase 1b) and `geometry/sculpt.pt`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from common import atomic
from common.errors import DivergedError
from fitter.config import GeometryConfig
from fitter.context import RunContext
from fitter.stages.geometry.distillation import GuidanceStep, build_guidance, guidance_state
from fitter.stages.geometry.init_views import InitViewFit, agreement, load_init_views
from fitter.stages.geometry.losses import (
    loss_landmarks_depth,
    loss_landmarks_on_surface,
    loss_mask,
    loss_prior,
    loss_prior_surface,
    loss_reference_depth_mse,
    loss_reference_depth_pearson,
    loss_reference_normal,
    loss_symmetry,
)
from fitter.stages.geometry.unseen import smooth_unseen
from fitter.stages.init.parametric import read_prior_surface
from fitter.stages.init.stage import read_init
from fitter.stages.reference.view import Reference, load_reference
from fitter.training.checkpoint import TrainState
from fitter.training.loop import TrainLoop
from representations.dmtet import DMTet, DMTetConfig, TetGrid
from representations.mesh import Mesh, edge_face_pairs, keep_largest_component, loss_laplacian, loss_normal_consistency, save_ply
from representations.render import Rasterizer

log = logging.getLogger("headfit")


def build_dmtet(cfg: GeometryConfig, seed: int, device: torch.device) -> DMTet:
    config = DMTetConfig(resolution=cfg.grid_resolution, bound=cfg.bound, band=cfg.narrow_band, hashgrid=cfg.hashgrid,
                         backend=cfg.backend, seed=seed)
    return DMTet(config).to(device)


def ramp(start_value: float, end_value: float, step: int, span: tuple[int, int]) -> float:
    a, b = span
    t = 1.0 if step >= b else 0.0 if step < a or b == a else (step - a) / (b - a)
    return start_value + (end_value - start_value) * t


@dataclass
class Sculptor:
    """One optimisation step of the sculpt phase (the `StepFn` of the training loop)."""

    cfg: GeometryConfig
    dmtet: DMTet
    ref: Reference
    prior: Callable[[torch.Tensor], torch.Tensor]
    init_points: torch.Tensor
    rng: np.random.Generator
    rasterizer: Rasterizer
    guidance: Optional[GuidanceStep] = None
    prior_surface: Optional[tuple[torch.Tensor, torch.Tensor]] = None
    """(points (N, 3), weights (N,)) of `init/prior_surface.npz` while `lambda_prior_surface` > 0, else None."""

    def is_guidance_step(self, step: int) -> bool:
        every = self.cfg.guidance_every
        return self.guidance is not None and step % every == every - 1

    def __call__(self, step: int) -> dict[str, torch.Tensor]:
        verts, faces = self.dmtet.get_mesh()
        if faces.shape[0] == 0:
            raise DivergedError(f"geometry: the surface vanished at step {step} (the SDF has no zero crossing); "
                                "raise fit.geometry.init_fit_steps or lower fit.geometry.lr")
        if self.is_guidance_step(step):
            losses = {"loss_isd": self.cfg.lambda_isd * self.guidance.loss(verts, faces, step)[0]}
            return losses | self._regularisers(verts, faces, step)
        return self._reference_losses(verts, faces, step) | self._regularisers(verts, faces, step)

    def _regularisers(self, verts: torch.Tensor, faces: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        terms = {
            "loss_normal_consistency": (ramp(cfg.lambda_normal_consistency, cfg.lambda_normal_consistency_end, step, cfg.regulariser_ramp),
                                        lambda: loss_normal_consistency(verts, faces, edge_face_pairs(faces))),
            "loss_laplacian": (ramp(cfg.lambda_laplacian, cfg.lambda_laplacian_end, step, cfg.regulariser_ramp),
                               lambda: loss_laplacian(verts, faces)),
        }
        return {name: weight * fn() for name, (weight, fn) in terms.items() if weight > 0}

    def _reference_losses(self, verts: torch.Tensor, faces: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        cfg, ref = self.cfg, self.ref
        passes = ["mask", "depth"] + (["normal_cam"] if ref.normal is not None else [])
        out = self.rasterizer.render(verts, faces, ref.camera, passes)
        terms: dict[str, tuple[float, Callable[[], torch.Tensor]]] = {
            "loss_mask": (cfg.lambda_mask, lambda: loss_mask(out["mask"], ref.mask)),
            "loss_landmarks": (cfg.lambda_landmarks, lambda: loss_landmarks_on_surface(self.dmtet.sdf, ref.landmarks)),
            "loss_landmark_depth": (cfg.lambda_landmark_depth,
                                    lambda: loss_landmarks_depth(out["depth"], out["mask"], ref.landmark_pixels, ref.landmark_depth)),
            "loss_symmetry": (cfg.lambda_symmetry, lambda: loss_symmetry(self.dmtet.sdf, self._near_surface(verts), ref.view_dir)),
            "loss_prior": (cfg.lambda_prior, lambda: loss_prior(self.dmtet.sdf, self.prior, self._near_init(), cfg.prior_band)),
        }
        if self.prior_surface is not None:
            terms["loss_prior_surface"] = (cfg.lambda_prior_surface, lambda: loss_prior_surface(self.dmtet.sdf, *self._prior_surface_sample()))
        if ref.normal is not None:
            terms["loss_ref_normal"] = (cfg.lambda_ref_normal, lambda: loss_reference_normal(out["normal_cam"], ref.normal, ref.mask))
        if ref.depth is not None:
            terms["loss_ref_depth"] = (cfg.lambda_ref_depth, lambda: loss_reference_depth_mse(out["depth"], ref.depth, ref.mask))
            terms["loss_ref_depth_pearson"] = (cfg.lambda_ref_depth_pearson,
                                               lambda: loss_reference_depth_pearson(out["depth"], ref.depth, ref.mask))
        return {name: weight * fn() for name, (weight, fn) in terms.items() if weight > 0}

    def _near_surface(self, verts: torch.Tensor) -> torch.Tensor:
        n = self.cfg.sample_points
        idx = torch.from_numpy(self.rng.integers(0, verts.shape[0], n)).to(verts.device)
        noise = torch.from_numpy(self.rng.normal(scale=0.03, size=(n, 3))).to(verts)
        return verts.detach()[idx] + noise

    def _prior_surface_sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.prior_surface is not None
        points, weights = self.prior_surface
        idx = torch.from_numpy(self.rng.integers(0, points.shape[0], min(self.cfg.sample_points, points.shape[0]))).to(points.device)
        return points[idx], weights[idx]

    def _near_init(self) -> torch.Tensor:
        n = self.cfg.sample_points
        idx = torch.from_numpy(self.rng.integers(0, self.init_points.shape[0], n)).to(self.init_points.device)
        noise = torch.from_numpy(self.rng.normal(scale=self.cfg.prior_band, size=(n, 3))).to(self.init_points)
        return self.init_points[idx] + noise


def band_state(dmtet: DMTet) -> tuple[Optional[Callable[[], dict]], Optional[Callable[[dict], None]]]:
    """Checkpoint hooks for the narrow band (its tets must match the saved field exactly)."""
    if not dmtet.config.band:
        return None, None

    def get() -> dict:
        grid = dmtet.grid if dmtet.grid is not None else dmtet.rebuild_band()
        return {"band_verts": grid.verts.cpu(), "band_tets": grid.tets.cpu(), "band_res": grid.resolution}

    def put(extra: dict) -> None:
        dmtet.grid = TetGrid(extra["band_verts"].to(dmtet.device), extra["band_tets"].to(dmtet.device), int(extra["band_res"]), dmtet.config.bound)

    return get, put


def combine_extras(hooks: list[tuple]) -> tuple[Optional[Callable[[], dict]], Optional[Callable[[dict], None]]]:
    """One pair of checkpoint hooks from several (each owns distinct keys)."""
    hooks = [(get, put) for get, put in hooks if get is not None]
    if not hooks:
        return None, None

    def get_all() -> dict:
        return {key: value for get, _ in hooks for key, value in get().items()}

    def put_all(state: dict) -> None:
        for _, put in hooks:
            put(state)

    return get_all, put_all


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg.fit.geometry
    out = ctx.stage_dir("geometry")
    seed = ctx.cfg.run.seed
    torch.manual_seed(seed)
    ref = load_reference(ctx, cfg.render_size)
    init_info, init_sdf, init_mesh = read_init(ctx)
    prior_surface = load_prior_surface(ctx, init_info)
    dmtet = build_dmtet(cfg, seed, ctx.device)
    rng, rasterizer = np.random.default_rng(seed), Rasterizer(cfg.render_backend)
    rebuild = band_rebuilder(dmtet, cfg)
    summary = fit_to_init(ctx, dmtet, init_sdf, init_mesh, rng, rasterizer, rebuild)
    optimizer = torch.optim.Adam(dmtet.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    guidance = build_guidance(ctx, rng, rasterizer) if cfg.uses_isd else None
    hooks = [band_state(dmtet)] + ([guidance_state(guidance)] if guidance is not None else [])
    get_extra, set_extra = combine_extras(hooks)
    state = TrainState({"dmtet": dmtet}, {"adam": optimizer}, rng, get_extra, set_extra)
    sculptor = Sculptor(cfg, dmtet, ref, init_sdf, init_mesh.verts.to(ctx.device), rng, rasterizer, guidance, prior_surface)
    TrainLoop(ctx, "geometry", "sculpt", state, cfg.steps, sculptor, before_step=rebuild).run()
    grid_step = 2.0 * init_sdf.bound / (init_sdf.resolution - 1)
    mesh, summary["smooth_unseen"] = smooth_unseen(final_mesh(dmtet), ref.camera, init_sdf, grid_step, cfg, rasterizer, ctx.device,
                                                   ctx.subject.landmarks_px(cfg.render_size), ref.mask[..., 0].cpu().numpy())
    save_ply(mesh, out / "mesh.ply")
    summary |= {"vertices": mesh.num_verts, "faces": mesh.num_faces,
                "final_losses": {k: v[-1][1] for k, v in state.history.items() if v}}
    atomic.write_json(out / "geometry.json", summary)
    log.info("geometry: %d faces", mesh.num_faces)


def load_prior_surface(ctx: RunContext, init_info: dict) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The prior-surface points and weights when `lambda_prior_surface` > 0 and the init wrote them (only
    init.kind=parametric does; with another init the term is ignored, with a warning)."""
    weight = ctx.cfg.fit.geometry.lambda_prior_surface
    if weight <= 0:
        return None
    data = read_prior_surface(ctx.out / "init")
    if init_info.get("kind") != "parametric" or data is None or len(data["points"]) == 0:
        log.warning("fit.geometry.lambda_prior_surface=%g is ignored: it needs init.kind=parametric (this run's init is %s)",
                    weight, init_info.get("kind"))
        return None
    return (torch.as_tensor(data["points"], dtype=torch.float32, device=ctx.device),
            torch.as_tensor(data["weights"], dtype=torch.float32, device=ctx.device))


def band_rebuilder(dmtet: DMTet, cfg: GeometryConfig) -> Optional[Callable[[int], None]]:
    """The loops' `before_step`: re-centre the narrow band on the moving surface now and then."""
    if not cfg.narrow_band:
        return None

    def rebuild(step: int) -> None:
        if step > 0 and step % cfg.band_rebuild_every == 0:
            dmtet.rebuild_band()

    return rebuild


def fit_to_init(ctx: RunContext, dmtet: DMTet, init_sdf, init_mesh: Mesh, rng: np.random.Generator,  # type: ignore[no-untyped-def]
                rasterizer: Rasterizer, rebuild: Optional[Callable[[int], None]]) -> dict:
    """Phase 1a (SDF regression) and 1b (normal views, `fitter/stages/geometry/init_views.py`).

    With --resume a saved sculpt checkpoint replaces both, and a saved phase-1b one replaces 1a."""
    cfg, out = ctx.cfg.fit.geometry, ctx.stage_dir("geometry")
    resumable = lambda name: ctx.resume and (out / f"{name}.pt").is_file()  # noqa: E731  (the loop loads it)
    if resumable("sculpt"):
        return {}
    summary: dict = {}
    if not resumable("init_views"):
        summary["init_fit_error"] = dmtet.fit_sdf(init_sdf, steps=cfg.init_fit_steps, lr=cfg.init_fit_lr)
        log.info("geometry: SDF fitted to the init (mean |error| %.4f)", summary["init_fit_error"])
    if cfg.init_view_steps == 0:
        return summary
    views = load_init_views(ctx.out / "init", init_mesh, cfg, rasterizer, ctx.device)
    optimizer = torch.optim.Adam(dmtet.parameters(), lr=cfg.init_view_lr, betas=tuple(cfg.betas))
    state = TrainState({"dmtet": dmtet}, {"adam": optimizer}, rng, *band_state(dmtet))
    TrainLoop(ctx, "geometry", "init_views", state, cfg.init_view_steps, InitViewFit(cfg, dmtet, views, rng, rasterizer),
              before_step=rebuild).run()
    summary["init_view_agreement"] = agreement(dmtet, views, rasterizer)
    log.info("geometry: fitted to the init's normal views (mean cosine %.3f, silhouette IoU %.3f)",
             summary["init_view_agreement"]["normal_cosine"], summary["init_view_agreement"]["silhouette_iou"])
    return summary


def final_mesh(dmtet: DMTet) -> Mesh:
    with torch.no_grad():
        verts, faces = dmtet.get_mesh()
    return keep_largest_component(Mesh(verts.detach().float().cpu(), faces.cpu()))
