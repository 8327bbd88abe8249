"""``DMTet``: a hash-grid MLP predicts SDF and vertex offsets on a (dense or narrow-band) tet grid."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..hashgrid import HashGridConfig, HashGridMLP
from .band import band_grid, eval_chunked
from .fit import Target, make_sampler
from .grid import TetGrid, dense_grid
from .marching import crossed_tets, marching_tets

MAX_DENSE_RESOLUTION = 192
"""Dense grids above this (6·R³ tets) cost gigabytes; use the narrow band instead."""

NEAR_SURFACE = 0.1
"""Fit error is measured on samples whose target |sdf| is below this fraction of ``bound``."""


@dataclass(frozen=True)
class DMTetConfig:
    """Grid and field settings.

    ``band``: half-width of the narrow band in fine grid spacings, or None for the dense grid.
    ``deform_scale``: largest vertex offset, in grid spacings (offset = tanh(raw) · scale · spacing).
    """

    resolution: int = 128
    bound: float = 1.0
    deform_scale: float = 0.5
    band: float | None = None
    band_coarse_res: int = 32
    max_band_cubes: int = 8_000_000
    hashgrid: HashGridConfig = field(default_factory=HashGridConfig)
    backend: str = "auto"
    seed: int = 0
    chunk: int = 2**17


class DMTet(nn.Module):
    """Deformable tetrahedral SDF; the state dict holds only the field (rebuild the band after loading)."""

    def __init__(self, config: DMTetConfig = DMTetConfig()):
        super().__init__()
        if config.band is None and config.resolution > MAX_DENSE_RESOLUTION:
            raise ValueError(f"dense resolution {config.resolution} > {MAX_DENSE_RESOLUTION}: set DMTetConfig.band")
        self.config = config
        self.field = HashGridMLP(4, config.hashgrid, backend=config.backend, seed=config.seed, bound=config.bound)
        self.grid: TetGrid | None = None if config.band else dense_grid(config.resolution, config.bound)

    @property
    def spacing(self) -> float:
        return 2.0 * self.config.bound / self.config.resolution

    @property
    def device(self) -> torch.device:
        return self.field.encoding.params.device

    def sdf_and_deform(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (N, 3) → sdf (N,) (negative inside) and vertex offsets (N, 3)."""
        out = self.field(points)
        return out[:, 0], torch.tanh(out[:, 1:]) * (self.config.deform_scale * self.spacing)

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """points (N, 3) → sdf (N,)."""
        return self.field(points)[:, 0]

    def rebuild_band(self) -> TetGrid:
        """Rebuild the narrow band around the current zero level set; returns the new grid."""
        cfg = self.config
        if not cfg.band:
            raise ValueError("rebuild_band() needs DMTetConfig.band")
        self.grid = band_grid(self.sdf, cfg.resolution, cfg.bound, cfg.band, cfg.band_coarse_res, cfg.max_band_cubes, self.device)
        return self.grid

    def _grid_on_device(self) -> TetGrid:
        g = self.grid if self.grid is not None else self.rebuild_band()
        if g.verts.device != self.device:
            g = self.grid = TetGrid(g.verts.to(self.device), g.tets.to(self.device), g.resolution, g.bound)
        return g

    def _sdf_and_deform_checkpointed(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sdf_and_deform`` in chunks whose activations are recomputed in backward.

        Saving the hash-grid activations of millions of band vertices would take several GB.
        """
        chunk = self.config.chunk
        if points.shape[0] <= chunk or not torch.is_grad_enabled():
            return self.sdf_and_deform(points)
        parts = [checkpoint(self.sdf_and_deform, points[i : i + chunk], use_reentrant=False)
                 for i in range(0, points.shape[0], chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def get_mesh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Marching-tets surface: verts (M, 3) float (differentiable w.r.t. the field), faces (F, 3) int64.

        Occupancy comes from one no-grad pass over all grid vertices; the field is then re-run with
        autograd only on the vertices of crossed tets, which are the only ones the mesh depends on.
        """
        grid = self._grid_on_device()
        verts, tets = grid.verts, grid.tets
        sdf_all = self._closed_at_box(verts, eval_chunked(self.sdf, verts, self.config.chunk))
        used, local = torch.unique(crossed_tets(sdf_all, tets), return_inverse=True)
        sdf_used, offsets = self._sdf_and_deform_checkpointed(verts[used])
        # Values of the no-grad pass (so the signs agree bit for bit), gradients of this pass.
        sdf_used = sdf_all[used] + (sdf_used - sdf_used.detach())
        return marching_tets(verts[used] + offsets, sdf_used, local.view(-1, 4))

    def _closed_at_box(self, verts: torch.Tensor, sdf: torch.Tensor) -> torch.Tensor:
        """Grid vertices on the box's faces count as outside, so the surface is always closed, even
        where the shape would run out of the box (e.g. a neck pulled down by the reference mask)."""
        on_box = (verts.abs() >= self.config.bound - 0.25 * self.spacing).any(dim=1)
        return torch.where(on_box, sdf.clamp_min(0.5 * self.spacing), sdf)

    def fit_sdf(
        self, target: Target, steps: int = 300, lr: float = 1e-2, batch: int = 2**14, pool_size: int = 200_000,
    ) -> float:
        """Fit the SDF to ``target`` (analytic SDF callable or trimesh mesh) with Adam, L1 loss.

        A mesh target's signed distances are precomputed once for ``pool_size`` points.
        Returns the mean absolute SDF error on fresh near-surface samples.  Rebuilds the narrow band
        afterwards when one is configured.  Deterministic for a given ``config.seed``.
        """
        gen = torch.Generator().manual_seed(self.config.seed)
        sample = make_sampler(target, self.config.bound, gen, pool_size)
        optimiser = torch.optim.Adam(self.field.parameters(), lr=lr, betas=(0.9, 0.99))
        for _ in range(steps):
            points, values = (t.to(self.device) for t in sample(batch))
            loss = (self.sdf(points) - values).abs().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        optimiser.zero_grad(set_to_none=True)  # leave no fitting gradients behind for the caller
        points, values = (t.to(self.device) for t in sample(batch))
        near = values.abs() < NEAR_SURFACE * self.config.bound
        with torch.no_grad():
            error = (self.sdf(points[near]) - values[near]).abs().mean().item()
        if self.config.band:
            self.rebuild_band()
        return error
