"""The `init` stage's contract (`fitter/contract.py`): what it reads, its settings, inputs and models."""

from __future__ import annotations

from pathlib import Path

from fitter.config import Config
from fitter.contract import StageContract, fixed_sections
from fitter.stages.init.stage import check_init_inputs, run
from guidance.registry import ModelSpec


def inputs(cfg: Config, subject_dir: Path) -> dict[str, Path]:
    init = cfg.init
    if init.kind == "mesh" and init.mesh_path:
        return {"mesh": Path(init.mesh_path)}
    if init.kind == "multiview" and init.views_dir and Path(init.views_dir).is_dir():
        folder = Path(init.views_dir)
        return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    return {}


def models(cfg: Config) -> list[ModelSpec]:
    if cfg.init.kind == "gan_inversion":
        return [ModelSpec("PanoHead generator (GAN-inversion init)", "models.panohead", cfg.models.panohead, "")]
    return []


def check(cfg: Config, image: Path) -> None:
    check_init_inputs(cfg)


CONTRACT = StageContract(
    name="init",
    run=run,
    reads=("intake", "prior"),
    writes=("init/init.json", "init/sdf.npz", "init/mesh.ply", "init/normals/", "init/textured.obj", "init/prior_surface.npz"),
    sections=fixed_sections("init", "models.panohead", "models.preset", "run.seed"),
    inputs=inputs,
    models=models,
    check=check,
    summary="a starting head: the fitted parametric head with hair, template, user mesh, PanoHead inversion or a multi-view fit",
)
