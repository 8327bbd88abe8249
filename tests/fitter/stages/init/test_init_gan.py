"""GAN-inversion init: camera conversion, W-projection, pivotal tuning and the init outputs,
with the tiny random PanoHead generator."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import ConfigError, MissingModelError
from fitter.config import load_config
from fitter.context import RunContext
from fitter.requirements import required_models
from fitter.stages.init import stage as init_stage
from fitter.stages.init.gan import _render, average_w, load_checkpoint_generator, pivotal_tuning, project_w, psnr, ramped_lr
from fitter.stages.init.sdf_grid import GridSDF
from guidance.lpips import LPIPS, vgg16_features
from guidance.panohead.camera import PANOHEAD_RADIUS, average_label, camera_label
from guidance.panohead.convert import save_safetensors
from guidance.panohead.errors import CheckpointError
from guidance.panohead.perceptual import StructureLoss, perceptual_loss
from guidance.panohead.render import rays
from guidance.panohead.tiny import TINY_KWARGS, tiny_generator
from guidance.panohead.unpickle import NetworkWeights
from guidance.weights import PickleRefusedError, WeightFileError
from representations.cameras import Camera, look_at
from representations.mesh import read_mesh
from tests import panohead_pickles as pk

SCALE = 1.5


pytestmark = pytest.mark.usefixtures("one_thread")


def reference_camera(size: int = 64) -> Camera:
    c2w = look_at(np.array([0.3, 0.2, 2.6]) * SCALE, np.array([0.0, 0.0, 0.2]) * SCALE)
    return Camera.from_normalized_focal(np.linalg.inv(c2w), size)


def settings(**overrides) -> types.SimpleNamespace:
    base = dict(projection_steps=60, projection_lr=0.1, lr_rampup=0.05, lr_rampdown=0.25, w_reg=0.0, mse_weight=0.1,
                tuning_steps=20, tuning_lr=3e-4)
    return types.SimpleNamespace(**(base | overrides))


def test_panohead_label_rays_see_what_our_camera_projects():
    camera = reference_camera(16)
    c = camera_label(camera, SCALE)[None]
    origins, dirs = rays(c[:, :16].reshape(1, 4, 4), c[:, 16:].reshape(1, 3, 3), 16)
    points = (origins + 2.0 * dirs)[0].double().numpy() * SCALE  # PanoHead world -> ours
    pixels, depth = camera.project(points)
    rows, cols = np.divmod(np.arange(256), 16)
    assert np.allclose(pixels, np.stack([cols + 0.5, rows + 0.5], 1), atol=1e-3) and (depth > 0).all()


def test_average_camera_is_frontal_at_panohead_radius():
    c2w = average_label()[:16].reshape(4, 4).numpy()
    assert np.allclose(c2w[:3, 3], [0, 0, PANOHEAD_RADIUS], atol=1e-6)
    assert np.allclose(c2w[:3, 1], [0, -1, 0], atol=1e-6)  # OpenCV y points down the image = world -y
    assert np.allclose(average_label()[16:].reshape(3, 3).numpy(), [[4.2647, 0, 0.5], [0, 4.2647, 0.5], [0, 0, 1]], atol=1e-6)


def test_lr_schedule_ramps_up_and_down():
    assert ramped_lr(0.0, 0.1, 0.05, 0.25) == 0.0
    assert ramped_lr(0.5, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    assert ramped_lr(0.99, 0.1, 0.05, 0.25) < 0.001


def planted(generator, seed: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = camera_label(reference_camera(), SCALE)[None]
    w_true = generator.mapping(torch.randn(1, 16, generator=torch.Generator().manual_seed(seed)), c)[:, 0]
    with torch.no_grad():
        return c, w_true, _render(generator, w_true, c)


def test_w_projection_recovers_a_planted_latent():
    generator = tiny_generator().requires_grad_(False)
    c, w_true, target = planted(generator)
    w_avg = average_w(generator, c, 200)
    with torch.no_grad():
        start = psnr(_render(generator, w_avg, c), target)
    w = project_w(generator, target, c, w_avg, settings(), StructureLoss())
    with torch.no_grad():
        assert psnr(_render(generator, w, c), target) >= 30.0 > start + 10
    assert float((w - w_true).norm()) < 0.2 * float((w_avg - w_true).norm())


def test_pivotal_tuning_fits_what_the_latent_cannot():
    generator = tiny_generator().requires_grad_(False)
    c, w_true, _ = planted(generator)
    _, _, target = planted(tiny_generator(seed=1).requires_grad_(False))  # another generator's head
    before = psnr(_render(generator, w_true, c), target)
    tuned = pivotal_tuning(generator, target, c, w_true, settings(tuning_lr=3e-3), StructureLoss())
    with torch.no_grad():
        assert psnr(_render(tuned, w_true, c), target) > before + 3
    assert all(not p.requires_grad for p in generator.parameters())  # the loaded generator is untouched


def lpips_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    return state | {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}


def test_lpips_vgg16_from_a_weight_file(tmp_path):
    from safetensors.torch import save_file

    state = lpips_state()
    save_file(state, str(tmp_path / "vgg.safetensors"))
    lpips = LPIPS.from_file(tmp_path / "vgg.safetensors")
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert float(lpips(a, a)) == pytest.approx(0.0, abs=1e-6) and float(lpips(a, b)) > 0
    torch.save(state, tmp_path / "vgg.pth")
    from_pickle = LPIPS.from_file(tmp_path / "vgg.pth", allow_pickle=True)
    assert all(torch.equal(x, y) for x, y in zip(from_pickle.state_dict().values(), lpips.state_dict().values()))
    del state["lin4.model.1.weight"]
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(MissingModelError, match=r"\(init\.gan\.lpips_weights\) lack lin4\.model\.1\.weight"):
        LPIPS.from_file(tmp_path / "bad.safetensors", key="init.gan.lpips_weights")
    state["lin4.model.1.weight"] = torch.rand(1, 3, 1, 1)
    save_file(state, str(tmp_path / "shape.safetensors"))
    with pytest.raises(MissingModelError, match="wrong shapes.*lin4"):
        LPIPS.from_file(tmp_path / "shape.safetensors")


class Boom:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_lpips_pickle_obeys_allow_pickle(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"features.0.weight": Boom(marker)}, tmp_path / "evil.pt")
    with pytest.raises(PickleRefusedError, match=r"convert-weights .*models\.allow_pickle=\[lpips\]"):
        perceptual_loss(tmp_path / "evil.pt")
    with pytest.raises(WeightFileError, match="plain weights"):
        perceptual_loss(tmp_path / "evil.pt", allow_pickle=True)  # allowed pickles still run nothing
    with pytest.raises(MissingModelError, match="do not exist"):
        perceptual_loss(tmp_path / "none.safetensors")
    assert not marker.exists()


def test_config_and_requirements_know_gan_inversion():
    cfg = load_config(None, ["init.kind=gan_inversion", "models.panohead=/x/panohead.safetensors"])
    assert "models.panohead" in [spec.key for spec in required_models(cfg)]
    with pytest.raises(ConfigError, match="init.gan.mesh_resolution"):
        load_config(None, ["init.kind=gan_inversion", "init.gan.mesh_resolution=4"])


def subject_run(tmp_path, level: float) -> RunContext:
    generator = tiny_generator()
    checkpoint = tmp_path / "tiny.safetensors"
    save_safetensors(NetworkWeights("TriPlaneGenerator", TINY_KWARGS, generator.state_dict()), checkpoint)
    c, _, target = planted(generator)
    subject = tmp_path / "run" / "subject"
    subject.mkdir(parents=True)
    Image.fromarray(((target[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).byte().numpy()).save(subject / "image.png")
    (subject / "camera.json").write_text(json.dumps(reference_camera().to_dict()))
    overrides = ["init.kind=gan_inversion", f"models.panohead={checkpoint}", "init.gan.projection_steps=3", "init.gan.tuning_steps=2",
                 "init.gan.w_avg_samples=50", "init.gan.neural_rendering_resolution=16", "init.gan.mesh_resolution=40",
                 f"init.gan.mesh_level={level}", "init.gan.sdf_resolution=32", "init.gan.normal_views=4", "init.gan.normal_size=48"]
    return RunContext(load_config(None, overrides), tmp_path / "run", torch.device("cpu"))


def test_gan_inversion_init_writes_mesh_sdf_and_normal_views(tmp_path):
    generator = tiny_generator()
    with torch.no_grad():
        c, w, _ = planted(generator)
        sigma = generator.density(generator.planes(w[:, None].expand(-1, generator.num_ws, -1)), torch.rand(1, 4000, 3) * 0.8 - 0.4)
    level = float(torch.quantile(sigma, 0.8))
    ctx = subject_run(tmp_path, level)
    init_stage.run(ctx)
    out = ctx.out / "init"
    info = json.loads((out / "init.json").read_text())
    assert info["kind"] == "gan_inversion" and info["world_scale"] == pytest.approx(np.linalg.norm(reference_camera().position) / PANOHEAD_RADIUS)
    mesh, sdf = read_mesh(out / "mesh.ply"), GridSDF.load(out / "sdf.npz")
    assert mesh.num_faces > 0 and (sdf.values < 0).any()
    spacing = 2 * sdf.bound / (sdf.resolution - 1)
    assert float(sdf(mesh.verts).abs().median()) < 1.5 * spacing  # the SDF's zero set is the density surface
    assert (mesh.verts.abs().max(0).values <= 0.5 * SCALE + 1e-4).all()  # inside PanoHead's box, in our units
    views = json.loads((out / "normals" / "cameras.json").read_text())["views"]
    assert [v["file"] for v in views] == ["000.png", "001.png", "002.png", "003.png"]
    image = np.asarray(Image.open(out / "normals" / "000.png"))
    assert image.shape == (48, 48, 3) and image.max() > 0 and image[0, 0].max() == 0
    from fitter.stages.geometry.init_views import load_init_views
    from representations.render import Rasterizer

    size = ctx.cfg.fit.geometry.render_size
    fitted = load_init_views(out, mesh, ctx.cfg.fit.geometry, Rasterizer("torch"), torch.device("cpu"))
    assert len(fitted) == 4 and fitted.normals.shape == (4, size, size, 3)  # geometry phase 1b reads these views
    assert float(fitted.masks[0].mean()) == pytest.approx((image.max(axis=-1) > 0).mean(), abs=0.02)


def test_gan_init_refuses_pickled_lpips_weights_unless_allowed(tmp_path):
    ctx = subject_run(tmp_path, 1.0)
    torch.save(lpips_state(), tmp_path / "lpips.pt")
    ctx.cfg.init.gan.lpips_weights = str(tmp_path / "lpips.pt")
    with pytest.raises(PickleRefusedError, match="lpips.pt"):
        init_stage.run(ctx)


@pytest.mark.parametrize("make, fragment", [
    (lambda folder: pk.system_call(folder / "ran"), "refusing to load global"),
    (lambda folder: pk.cyclic_modules(), "contains itself"),
    (lambda folder: pk.laughs_in_kwargs(), "max_kwargs_items"),
    (lambda folder: b"", "is empty"),
], ids=["code", "cycle", "laughs", "empty"])
def test_unusable_panohead_checkpoint_is_one_user_error(tmp_path, make, fragment):
    path = tmp_path / "panohead.pkl"
    path.write_bytes(make(tmp_path))
    with pytest.raises(CheckpointError, match=fragment) as info:
        load_checkpoint_generator(path)
    assert isinstance(info.value, MissingModelError) and "\n" not in str(info.value)
    assert str(info.value).startswith(f"cannot use models.panohead={path}")
    assert not (tmp_path / "ran").exists()


def test_missing_or_damaged_converted_checkpoint_is_one_user_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint_generator(tmp_path / "none.safetensors")
    path = tmp_path / "tiny.safetensors"
    save_safetensors(NetworkWeights("TriPlaneGenerator", TINY_KWARGS, tiny_generator().state_dict()), path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint_generator(path)
