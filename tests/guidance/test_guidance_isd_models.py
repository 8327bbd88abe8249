"""ISD with the tiny random models: real UNet/ControlNet/IP-Adapter/VAE path, gradients, trained VSD LoRA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from guidance.control import draw_face_landmarks, to_control_tensor
from guidance.isd import ISDConfig, ISDGuidance
from guidance.lora import lora_enabled
from guidance.models import load_isd_models, tiny_models_config
from guidance.models.config import ModelsConfig
from representations.cameras import Camera

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory) -> ModelsConfig:
    return tiny_models_config(ModelsConfig(), tmp_path_factory.mktemp("cache") / "tiny-random" / "v1")


def control_images(azimuths: list[float]) -> torch.Tensor:
    from fitter.config import REPO_ROOT

    points = np.load(REPO_ROOT / "fitter" / "stages" / "intake" / "canonical_landmarks.npy").astype(np.float64)
    return to_control_tensor([draw_face_landmarks(points, Camera.orbit(a, 0.0, 3.5, 30.0, 32)) for a in azimuths])


def test_isd_gradients_reach_the_render(tiny_cfg):
    models = load_isd_models(tiny_cfg)
    isd = ISDGuidance.from_models(models, ISDConfig(grad_clip=1.0))
    azimuths = [0.0, 80.0, 180.0]
    images = torch.rand(3, 3, 32, 32, requires_grad=True)
    loss, info = isd.loss(images, azimuths, control_images(azimuths), step=3, identity=torch.randn(512))
    loss.backward()
    assert images.grad.shape == images.shape and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert info["isd_identity_views"] == 1.0 and 20 <= info["isd_t"] <= 500


def test_identity_and_control_change_the_prediction(tiny_cfg):
    models = load_isd_models(tiny_cfg)
    isd = ISDGuidance.from_models(models, ISDConfig())
    z_t, t = torch.randn(1, 4, 16, 16), torch.tensor([300])
    text = isd.text(["a portrait"])
    plain = isd.denoiser.predict(z_t, t, text, None, None)
    with_id = isd.denoiser.predict(z_t, t, text, torch.randn(1, 1, 512), None)
    with_control = isd.denoiser.predict(z_t, t, text, None, control_images([0.0]))
    assert not torch.allclose(plain, with_id) and not torch.allclose(plain, with_control)
    assert torch.equal(plain, isd.denoiser.predict(z_t, t, text, None, None))  # identity off again: scale restored to 0


def test_vsd_lora_is_really_trained(tiny_cfg):
    models = load_isd_models(tiny_cfg, identity=False, controlnets=())
    isd = ISDGuidance.from_models(models, ISDConfig(vsd=True, lora_lr=1e-2, guidance_scale=7.5))
    lora = isd.lora
    z_t, t, text = torch.randn(1, 4, 16, 16), torch.tensor([400]), isd.text(["a portrait"])
    with lora_enabled(lora.layers, False):
        frozen = isd.denoiser.predict(z_t, t, text, None, None)
    assert torch.allclose(lora.predict(z_t, t, text), frozen)  # a fresh LoRA (B = 0) changes nothing
    before = [p.detach().clone() for p in lora.parameters]
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    for step in range(3):
        loss, info = isd.loss(images, [0.0, 90.0], step=step)
        loss.backward()
    assert "vsd_lora_loss" in info and torch.isfinite(images.grad).all()
    assert all(not torch.equal(a, b) for a, b in zip(before, lora.parameters))
    assert not torch.allclose(lora.predict(z_t, t, text), frozen)
    assert not any(p.requires_grad for n, p in models.sd.unet.named_parameters() if ".base." in n)
