"""Fit a surface to a view set: DMTet with an explicit SDF on a dense tet grid.

The SDF values at the grid vertices start as the visual hull of the masks (`hull.py`) and are
optimised, jointly with a colour volume (a coarse RGB grid read trilinearly at the surface), on
random subsets of the views: silhouette MSE, L1 photometric consistency inside the silhouettes,
camera-space normal MSE where a view has a normal map, plus normal-consistency and Laplacian mesh
regularisers and a sign-agreement term across crossed grid edges (removes floaters).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fitter.stages.init.multiview.hull import visual_hull_sdf
from fitter.stages.init.multiview.loading import ViewSet
from fitter.stages.init.multiview.shading import render_coloured
from representations.dmtet import TetGrid, dense_grid, marching_tets
from representations.dmtet.marching import crossed_tets
from representations.mesh import Mesh, edge_face_pairs, keep_largest_component, loss_laplacian, loss_normal_consistency
from representations.render import Rasterizer

log = logging.getLogger("headfit")

TET_EDGES = [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]


@dataclass(frozen=True)
class FitSettings:
    """Loss weights are relative to the silhouette term (MSE of coverage in [0, 1])."""

    steps: int = 200
    grid_resolution: int = 64
    band: float = 3.0
    """Only tets with a vertex within this many grid spacings of the hull surface are kept."""
    bound: float = 1.3
    views_per_step: int = 4
    colour_resolution: int = 48
    lr_sdf: float = 0.05
    """Adam step for the SDF values, in grid spacings."""
    lr_colour: float = 0.05
    lambda_mask: float = 1.0
    lambda_rgb: float = 1.0
    lambda_normal: float = 0.1
    lambda_normal_consistency: float = 0.02
    lambda_laplacian: float = 2.0
    lambda_sign: float = 0.01
    seed: int = 0


class ColourVolume(torch.nn.Module):
    """RGB on a (C, C, C) grid over [-bound, bound]³, read trilinearly."""

    def __init__(self, resolution: int, bound: float, fill: float = 0.5):
        super().__init__()
        self.bound = bound
        self.grid = torch.nn.Parameter(torch.full((1, 3, resolution, resolution, resolution), fill))

    def forward(self, points: Tensor) -> Tensor:
        """points (N, 3) world → colours (N, 3)."""
        coords = (points / self.bound).view(1, 1, 1, -1, 3)  # grid_sample wants (x, y, z) over (W, H, D)
        out = F.grid_sample(self.grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(3, -1).T


@dataclass
class FitResult:
    mesh: Mesh
    """The fitted surface, largest component, outward faces."""
    colour: ColourVolume
    losses: dict[str, float]
    """Last step's weighted loss terms."""
    hull_mesh: Mesh
    """The visual-hull surface the fit started from."""


class SurfaceFit:
    """Explicit-SDF DMTet and colour volume fitted to a `ViewSet`."""

    def __init__(self, views: ViewSet, settings: FitSettings):
        self.views, self.settings = views, settings
        full = dense_grid(settings.grid_resolution, settings.bound)
        hull = visual_hull_sdf(views.masks.numpy(), views.cameras, full.verts)
        self.grid, hull = hull_band(full, hull, settings.band)
        self.sdf = torch.nn.Parameter(self._closed(hull))
        self.colour = ColourVolume(settings.colour_resolution, settings.bound)
        self.rasterizer = Rasterizer("torch")
        self.rng = np.random.default_rng(settings.seed)

    def _closed(self, sdf: Tensor) -> Tensor:
        on_box = (self.grid.verts.abs() >= self.settings.bound - 1e-4).any(dim=1)
        return torch.where(on_box, sdf.clamp_min(0.5 * self.grid.spacing), sdf)

    def surface(self) -> tuple[Tensor, Tensor, Tensor]:
        """Current mesh: verts (M, 3) differentiable w.r.t. the SDF, faces (F, 3), and the (T', 4)
        tets the surface crosses."""
        sdf = self._closed(self.sdf)
        with torch.no_grad():
            crossed = crossed_tets(sdf, self.grid.tets)
        verts, faces = marching_tets(self.grid.verts, sdf, crossed)
        return verts, faces, crossed

    def loss_terms(self, verts: Tensor, faces: Tensor, crossed: Tensor, view_ids: list[int]) -> dict[str, Tensor]:
        s, views = self.settings, self.views
        colours = self.colour(verts)
        terms = {"mask": 0.0, "rgb": 0.0, "normal": 0.0}
        for i in view_ids:
            normal_target = views.normals[i]
            out = render_coloured(self.rasterizer, verts, faces, views.cameras[i], colours, normal_target is not None)
            target_mask = views.masks[i][..., None]
            terms["mask"] = terms["mask"] + F.mse_loss(out["mask"], target_mask)
            seen = (target_mask > 0.5) & out["covered"][..., None]
            terms["rgb"] = terms["rgb"] + _masked_mean((out["rgb"] - views.images[i]).abs(), seen)
            if normal_target is not None:
                terms["normal"] = terms["normal"] + _masked_mean((out["normal_cam"] - normal_target).square(), seen)
        n = len(view_ids)
        weighted = {"mask": s.lambda_mask * terms["mask"] / n, "rgb": s.lambda_rgb * terms["rgb"] / n}
        if any(v is not None for v in views.normals):
            weighted["normal"] = s.lambda_normal * terms["normal"] / n
        weighted["normal_consistency"] = s.lambda_normal_consistency * loss_normal_consistency(verts, faces, edge_face_pairs(faces))
        weighted["laplacian"] = s.lambda_laplacian * loss_laplacian(verts, faces)
        weighted["sign"] = s.lambda_sign * self._sign_agreement(crossed)
        return weighted

    def _sign_agreement(self, crossed: Tensor) -> Tensor:
        """BCE pushing the two ends of each crossed grid edge to agree (nvdiffrec's SDF regulariser);
        crossed: (T', 4) tets the surface crosses."""
        edges = crossed[:, TET_EDGES].reshape(-1, 2)
        a, b = self.sdf[edges[:, 0]], self.sdf[edges[:, 1]]
        crossed = (a > 0) != (b > 0)
        if not crossed.any():
            return self.sdf.sum() * 0.0
        a, b = a[crossed], b[crossed]
        scale = 1.0 / self.grid.spacing
        return 0.5 * (F.binary_cross_entropy_with_logits(a * scale, (b > 0).float())
                      + F.binary_cross_entropy_with_logits(b * scale, (a > 0).float()))

    def run(self) -> FitResult:
        s = self.settings
        hull_mesh = self.current_mesh()
        optimiser = torch.optim.Adam([{"params": [self.sdf], "lr": s.lr_sdf * self.grid.spacing},
                                      {"params": self.colour.parameters(), "lr": s.lr_colour}])
        losses: dict[str, float] = {}
        for _ in range(s.steps):
            verts, faces, crossed = self.surface()
            if faces.shape[0] == 0:
                break
            k = min(s.views_per_step, len(self.views))
            terms = self.loss_terms(verts, faces, crossed, sorted(self.rng.choice(len(self.views), k, replace=False).tolist()))
            total = sum(terms.values())
            optimiser.zero_grad(set_to_none=True)
            total.backward()
            optimiser.step()
            losses = {name: float(value.detach()) for name, value in terms.items()}
        log.info("multiview fit: %d steps, last losses %s", s.steps, {k: round(v, 5) for k, v in losses.items()})
        return FitResult(self.current_mesh(), self.colour, losses, hull_mesh)

    def current_mesh(self) -> Mesh:
        with torch.no_grad():
            verts, faces, _ = self.surface()
        return keep_largest_component(Mesh(verts.detach().float().clone(), faces.clone()))


def hull_band(grid: TetGrid, sdf: Tensor, band: float) -> tuple[TetGrid, Tensor]:
    """The tets of ``grid`` with a vertex where |sdf| < band spacings, re-indexed, and their vertices' sdf."""
    near = sdf.abs() < band * grid.spacing
    tets = grid.tets[near[grid.tets].any(dim=1)]
    used, local = torch.unique(tets, return_inverse=True)
    return TetGrid(grid.verts[used], local.view(-1, 4), grid.resolution, grid.bound), sdf[used]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    weight = mask.expand_as(values).to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def fit_surface(views: ViewSet, settings: FitSettings = FitSettings()) -> FitResult:
    """Fit a closed surface (and a colour volume) to the views; see the module docstring."""
    torch.manual_seed(settings.seed)
    return SurfaceFit(views, settings).run()
