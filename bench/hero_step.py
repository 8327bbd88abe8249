"""Hero-step benchmark: one step of each diffusion-driven part of the hero fit, real-size models, 512².
Run: python bench/hero_step.py [--device cpu|cuda] [--out DIR]   (not part of CI: minutes, ~20 GB cache)

With `models.preset=random-full` (every hero model at its published size, random weights, in the public
layouts: guidance/models/random_full.py; built once under $HEADFIT_CACHE) and the hero config
(configs/portrait3d.yaml), through the project's own entry points:

* geometry — `fitter.stages.geometry.distillation.build_guidance`, then one `GuidanceStep.loss` on the init
  mesh (DMTet of the init's SDF: render → normal encoding → ISD with identity tokens and the landmark
  ControlNet) and its backward into the SDF; the view is drawn near the front (identity tokens on).
* reference — `fitter.stages.reference.generate.generate_map` (normal map: normal-adapted SD, canny
  ControlNet, IP-Adapter), once with 1 and once with 2 DDIM steps.
* inpaint — `fitter.stages.texture.diffusion.inpainted_texture` on one back view (azimuth 180°), 1 and 2 DDIM steps.
* refine — `fitter.stages.texture.diffusion.refine_texture` for one (SDEdit) step, with 1 and 2 DDIM steps
  in its target; LPIPS VGG16 with random weights.

Loading is timed apart from stepping (a clock around the project's model loaders), so ``*_load_ms`` is
reading and moving weights and ``*_ms`` the rest. From the 1- and 2-step runs: ``*_ddim_step_ms`` (one more
DDIM step: the UNet + ControlNet with CFG) and ``*_overhead_ms`` (the rest of one call: text encoding,
VAE, rendering, back-projection, losses). ``estimate_hero_diffusion_s`` multiplies them by the hero
schedule (2000 ISD steps, 2 maps x 30 steps, 15 views x 20 steps, 200 SDEdit steps x `refine.ddim_steps`)
plus the loads: the diffusion part of the fit, without its cheap reference-loss and init-fit steps.
Memory: the peak RSS (resource.getrusage) on the CPU, `torch.cuda.max_memory_allocated` per component on
CUDA. CPU runs fp32; CUDA the config's precisions (fp16). Prints one JSON object on its last line.
The intake and init that prepare the run folder (the shipped photo, template init) are not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP pool (see bench/render.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import guidance.lpips  # noqa: E402
from fitter.cli import main as cli_main  # noqa: E402
from fitter.config import REPO_ROOT, Config, load_config  # noqa: E402
from fitter.context import RunContext, resolve_device  # noqa: E402
from fitter.pipeline import with_effective_models  # noqa: E402
from fitter.stages.geometry.distillation import build_guidance  # noqa: E402
from fitter.stages.geometry.stage import build_dmtet  # noqa: E402
from fitter.stages.init.stage import read_init  # noqa: E402
from fitter.stages.reference.generate import generate_map, subject_identity  # noqa: E402
from fitter.stages.texture.diffusion import identity_embedding, inpainted_texture, refine_texture  # noqa: E402
from fitter.stages.texture.layers import projection_layers  # noqa: E402
from fitter.stages.texture.stage import subject_photo, unwrap  # noqa: E402
from guidance.control import canny_control  # noqa: E402
from guidance.models import bundle, loading  # noqa: E402
from guidance.models.random_full import ensure_random_full_models, random_full_root  # noqa: E402
from guidance.sdedit import load_texture_prior  # noqa: E402
from representations.cameras import OrbitRange  # noqa: E402
from representations.render import Rasterizer  # noqa: E402

HERO = REPO_ROOT / "configs" / "portrait3d.yaml"
EXAMPLE = REPO_ROOT / "examples" / "astronaut.png"
LOADERS: tuple[tuple[Any, str], ...] = ((loading, "from_pretrained"), (loading, "load_scheduler"), (bundle, "read_ip_adapter"),
                                        (bundle, "attach_ip_adapter"), (guidance.lpips.LPIPS, "from_file"))
"""What counts as loading: every `from_pretrained` (and the move to the device), scheduler configs, IP-Adapter and
LPIPS weight files."""
log = logging.getLogger("headfit")


class LoadClock:
    """Seconds spent inside the project's model loaders while `running` (outermost calls only)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds, self._depth = device, 0.0, 0

    def _wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    sync(self.device)
                    self.seconds += time.perf_counter() - start
        return timed

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """The loaders of `LOADERS` timed while the block runs (a class's method through a staticmethod)."""
        originals = [(owner, name, vars(owner)[name]) for owner, name in LOADERS]
        try:
            for owner, name, _ in originals:
                timed = self._wrap(getattr(owner, name))
                setattr(owner, name, staticmethod(timed) if isinstance(owner, type) else timed)
            yield
        finally:
            for owner, name, original in originals:
                setattr(owner, name, original)


@contextlib.contextmanager
def build_log() -> Iterator[None]:
    """The random-full build's progress on stderr (the CLI sets up its own logging afterwards)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device: torch.device) -> float:
    """Peak since the last `reset_peak`: CUDA allocations on CUDA, else the process's peak RSS (never reset)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


@dataclasses.dataclass
class Measured:
    total_ms: float
    load_ms: float

    @property
    def run_ms(self) -> float:
        return self.total_ms - self.load_ms


def measure(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, Measured]:
    clock = LoadClock(device)
    sync(device)
    start = time.perf_counter()
    with clock.running():
        result = fn()
    sync(device)
    return result, Measured(1e3 * (time.perf_counter() - start), 1e3 * clock.seconds)


def prepare_run(out: Path, overrides: list[str]) -> None:
    """Intake and (template) init of the shipped photo into ``out``: what the measured steps read."""
    code = cli_main(["--image", str(EXAMPLE), "--config", str(HERO), "--out", str(out), "--stop-after", "init",
                     "reference.source=none", *overrides])
    if code != 0:
        raise SystemExit(f"preparing the run folder failed (exit {code})")


def geometry(ctx: RunContext, result: dict, sdf_steps: int, repeats: int) -> None:
    """Load the ISD models, then ``repeats`` guidance steps (the median after the first is reported)."""
    g = ctx.cfg.fit.geometry
    device = ctx.device
    _, init_sdf, _ = read_init(ctx)
    dmtet = build_dmtet(g, ctx.cfg.run.seed, device)
    dmtet.fit_sdf(init_sdf, steps=sdf_steps, lr=g.init_fit_lr)
    reset_peak(device)
    rasterizer = Rasterizer(g.render_backend)
    guidance, loaded = measure(device, lambda: build_guidance(ctx, np.random.default_rng(ctx.cfg.run.seed), rasterizer))

    def step() -> dict[str, float]:
        dmtet.zero_grad(set_to_none=True)
        verts, faces = dmtet.get_mesh()
        loss, info = guidance.loss(verts, faces, 0)
        (g.lambda_isd * loss).backward()
        return {"faces": int(faces.shape[0]), "loss": loss.item()}

    times = []
    for _ in range(repeats):
        info, stepped = measure(device, step)
        times.append(stepped.total_ms)
    grad = sum(float(p.grad.norm()) for p in dmtet.parameters() if p.grad is not None)
    later = sorted(times[1:])
    result.update(geometry_load_ms=round(loaded.total_ms), geometry_isd_first_step_ms=round(times[0]),
                  geometry_isd_step_ms=round(later[len(later) // 2] if later else times[0]),
                  geometry_mesh_faces=info["faces"], geometry_sdf_grad_norm=grad, geometry_peak_mb=round(peak_mb(device)))


def reference(ctx: RunContext, result: dict) -> None:
    cfg, device = ctx.cfg, ctx.device
    crop = ctx.subject.image_uint8(cfg.reference.size)
    control, identity = canny_control(crop), subject_identity(ctx.subject, cfg)
    reset_peak(device)
    runs = []
    for steps in warmed((1, 2), device):
        run_cfg = dataclasses.replace(cfg, reference=dataclasses.replace(cfg.reference, steps=steps))
        _, measured = measure(device, functools.partial(generate_map, "normal", run_cfg, control, identity, cfg.prompt, device))
        runs.append(measured)
        gc.collect()
    record(result, "reference", runs[-2:], device)


def warmed(steps: tuple[int, ...], device: torch.device) -> tuple[int, ...]:
    """On CUDA an untimed first call (kernel selection, lazy initialisation) before the timed ones."""
    return (steps[0], *steps) if device.type == "cuda" else steps


def record(result: dict, name: str, runs: list[Measured], device: torch.device) -> None:
    """``name``_load_ms (the first run's), ``name``_ddim_step_ms and ``name``_overhead_ms from a 1- and a 2-step run."""
    one, two = runs
    step = max(two.run_ms - one.run_ms, 0.0)
    result.update({f"{name}_load_ms": round(one.load_ms), f"{name}_1step_ms": round(one.run_ms), f"{name}_2step_ms": round(two.run_ms),
                   f"{name}_ddim_step_ms": round(step), f"{name}_overhead_ms": round(one.run_ms - step),
                   f"{name}_peak_mb": round(peak_mb(device))})


def texture(ctx: RunContext, result: dict, lpips: Path) -> None:
    cfg, device = ctx.cfg, ctx.device
    t = dataclasses.replace(cfg.fit.texture, trajectory_azimuths=[180.0], trajectory_elevations=[-15.0], lpips_weights=str(lpips))
    _, _, init_mesh = read_init(ctx)
    mesh = unwrap(init_mesh, t)
    subject = subject_photo(ctx)
    layers = projection_layers(mesh, subject, t)
    identity = identity_embedding(ctx, t)
    start = torch.stack([layers.confidences[k] for k in ("direct", "mirrored") if k in layers.confidences]).sum(0).clamp(0.0, 1.0)
    coverage = start * layers.surface.valid
    reset_peak(device)
    prior, loaded = measure(device, lambda: load_texture_prior(cfg.models, t.prior, device, t.precision, identity=identity is not None,
                                                               prompt=cfg.prompt + t.prompt_suffix))
    result["texture_prior_load_ms"] = round(loaded.total_ms)
    runs = []
    for steps in warmed((1, 2), device):
        run_t = dataclasses.replace(t, inpaint=dataclasses.replace(t.inpaint, ddim=dataclasses.replace(t.inpaint.ddim, steps=steps)))
        painted, measured = measure(device, functools.partial(inpainted_texture, ctx, mesh, layers, coverage, prior, identity, run_t))
        runs.append(measured)
    record(result, "inpaint", runs[-2:], device)
    result["inpaint_generated_px"] = painted.views[0]["generated_px"]
    runs = []
    for ddim in warmed((1, 2), device):
        run_t = dataclasses.replace(t, refine=dataclasses.replace(t.refine, steps=1, ddim_steps=ddim))
        _, measured = measure(device, functools.partial(refine_texture, ctx, mesh, painted.texture, subject, prior, identity, run_t))
        runs.append(measured)
    record(result, "refine", runs[-2:], device)  # refine_load_ms: the LPIPS weights (the prior is loaded once, above)


def random_lpips_vgg16(path: Path, seed: int = 0) -> Path:
    """LPIPS VGG16 weights with random values in the file layout of guidance/lpips.py (heads non-negative)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    state = {}
    for key, value in guidance.lpips.LPIPS("vgg16").state_dict().items():
        name = f"lin{key.split('.')[1]}.model.1.weight" if key.startswith("lins.") else key
        state[name] = value.abs() if key.startswith("lins.") else value
    save_file(state, str(path))
    return path


def estimate(result: dict, cfg: Config) -> float:
    """Seconds of the hero schedule's diffusion work from the measured steps (see module docstring)."""
    g, t, r = cfg.fit.geometry, cfg.fit.texture, cfg.reference
    isd_steps = g.steps // g.guidance_every
    sdedit_steps = (t.refine.steps + 1) // 2
    per_call = lambda name, steps: result[f"{name}_overhead_ms"] + steps * result[f"{name}_ddim_step_ms"]  # noqa: E731
    ms = (isd_steps * result["geometry_isd_step_ms"] + 2 * per_call("reference", r.steps)
          + len(t.trajectory_azimuths) * per_call("inpaint", t.inpaint.ddim.steps) + sdedit_steps * per_call("refine", t.refine.ddim_steps)
          + result["geometry_load_ms"] + 2 * result["reference_load_ms"] + result["texture_prior_load_ms"])
    return ms / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="run folder to prepare and use (default: a temporary one)")
    parser.add_argument("--preset", default="random-full", help="models.preset (tiny-random: a quick check of this script)")
    parser.add_argument("--sdf-steps", type=int, default=30, help="SDF-to-init regression steps before the geometry step (untimed)")
    parser.add_argument("--repeats", type=int, default=None, help="geometry steps to time (default: 1 on CPU, 5 on CUDA)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides (e.g. for a quick check)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    overrides = [f"models.preset={args.preset}", f"run.device={args.device}", "run.dry_run=false", *args.set]
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "torch_threads": torch.get_num_threads(), "preset": args.preset}
    if args.preset == "random-full":
        warm = (random_full_root() / "complete").is_file()
        start = time.perf_counter()
        with build_log():
            ensure_random_full_models()
        result.update(models_cache=str(random_full_root()), models_build_s=round(time.perf_counter() - start, 1), models_cache_warm=warm)
    with tempfile.TemporaryDirectory(prefix="hero_step_") as tmp:
        lpips = random_lpips_vgg16(Path(tmp) / "lpips_vgg16.safetensors")
        out = args.out or Path(tmp) / "run"
        start = time.perf_counter()
        prepare_run(out, overrides)
        result["prepare_s"] = round(time.perf_counter() - start, 1)
        cfg = load_config(HERO, overrides)
        g = cfg.fit.geometry
        views = OrbitRange(azimuth=(-45.0, 45.0), elevation=g.views.elevation, radius=g.views.radius, fov_y=g.views.fov_y)
        cfg = dataclasses.replace(cfg, fit=dataclasses.replace(cfg.fit, geometry=dataclasses.replace(g, views=views)))
        ctx = RunContext(with_effective_models(cfg), out, device)
        size = (cfg.fit.geometry.guidance_size, cfg.reference.size, cfg.fit.texture.inpaint.gen_size, cfg.fit.texture.refine.render_size)
        result["sizes_geometry_reference_inpaint_refine"] = list(size)
        result["dtype"] = "fp32" if device.type == "cpu" else f"isd {g.isd.precision}, reference fp16, texture {cfg.fit.texture.precision}"
        geometry(ctx, result, args.sdf_steps, args.repeats or (5 if device.type == "cuda" else 1))
        reference(ctx, result)
        texture(ctx, result, lpips)
        result["estimate_hero_diffusion_s"] = round(estimate(result, cfg), 1)
    if device.type == "cpu":
        result["peak_rss_mb"] = round(peak_mb(device))
    else:
        result["peak_cuda_allocated_mb"] = max(v for k, v in result.items() if k.endswith("_peak_mb"))
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
