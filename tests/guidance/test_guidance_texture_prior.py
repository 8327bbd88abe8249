"""The texture prior (issue 16): the SDEdit target as an n-step DDIM edit, the inpainting UNet's grey
masked image, DDIM schedulers that never clip x̂0, and the authors' texture conditioning defaults."""

from __future__ import annotations

import pytest
import torch

from common.errors import SettingError
from guidance.inpaint import BlendedInpainter, InpaintConfig, MaskConditionedUNet
from guidance.models import loading
from guidance.models.sources import LoadOptions, Resolved
from guidance.models.tiny_builders import tiny_scheduler
from guidance.registry import ModelSpec
from guidance.sdedit import AUTHORS_NEGATIVE_PROMPT, GuidedPrior, PriorConfig, ddim_timesteps, sdedit_target, x0_from_noise

ALPHAS = tiny_scheduler().alphas_cumprod

pytestmark = pytest.mark.usefixtures("one_thread")


class PixelCodec:
    """Latents are the image itself, scaled to [-1, 1]."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images * 2.0 - 1.0

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((latents + 1.0) * 0.5).clamp(0.0, 1.0)


def no_text(prompts: list[str]) -> torch.Tensor:
    return torch.zeros(len(prompts), 77, 8)


class Recording:
    """ε = 0.1·z_t (any fixed rule); records every call's timesteps, identity and control."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def predict(self, z_t, t, text, identity, control):
        self.calls.append({"t": t.tolist(), "identity": identity, "control": control})
        return 0.1 * z_t


class TwoPoints:
    """The exact ε of a data distribution with two equally likely points ``a`` and ``b`` (latents (1, C, h, w))."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        self.points = torch.cat([a, b])  # (2, C, h, w)

    def predict(self, z_t, t, text, identity, control):
        alpha = ALPHAS[t].view(-1, 1, 1, 1, 1)
        d2 = ((z_t[:, None] - alpha.sqrt() * self.points[None]) ** 2).flatten(2).sum(-1)  # (n, 2)
        w = torch.softmax(-d2 / (2.0 * (1.0 - alpha.view(-1, 1))), dim=1)
        mean = (w.view(*w.shape, 1, 1, 1) * self.points[None]).sum(1)
        a = alpha.view(-1, 1, 1, 1)
        return (z_t - a.sqrt() * mean) / (1.0 - a).sqrt()


def prior(denoiser, **cfg) -> GuidedPrior:
    return GuidedPrior(PriorConfig(guidance_scale=1.0, **cfg), denoiser, PixelCodec(), no_text, ALPHAS)


def test_one_ddim_step_is_the_one_step_x0_estimate():
    images, t = torch.rand(1, 3, 8, 8), torch.tensor([120])
    out = sdedit_target(prior(Recording()), images, t, torch.Generator().manual_seed(3), [0.0], steps=1)
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    a = ALPHAS[120]
    z_t = a.sqrt() * (images * 2 - 1) + (1 - a).sqrt() * noise
    assert torch.allclose(out, PixelCodec().decode(x0_from_noise(z_t, 0.1 * z_t, a.view(1))), atol=1e-6)


def test_the_target_is_a_ddim_edit_from_t_with_the_same_conditioning_at_every_step():
    denoiser = Recording()
    identity, control = torch.randn(512), torch.rand(1, 3, 8, 8)
    sdedit_target(prior(denoiser), torch.rand(1, 3, 8, 8), torch.tensor([150]), None, [180.0], identity, control, steps=20)
    assert [c["t"][0] for c in denoiser.calls] == ddim_timesteps(150, 20)[:-1]  # 150, …, 0: twenty steps, then clean
    assert all(torch.equal(c["control"], control.repeat(2, 1, 1, 1)) for c in denoiser.calls)  # cond + uncond
    assert all(c["identity"] is not None and torch.equal(c["identity"][0, 0], identity) for c in denoiser.calls)


def test_many_steps_land_on_a_datum_where_one_step_blurs_between_two():
    """Why the authors' 20 steps: x̂0 from one step is the posterior mean, a blend of the possible images."""
    a, b = torch.full((1, 3, 4, 4), 0.8), torch.full((1, 3, 4, 4), -0.8)
    images, t = torch.full((1, 3, 4, 4), 0.5), torch.tensor([850])  # equally far from both
    one, many = (sdedit_target(prior(TwoPoints(a, b)), images, t, torch.Generator().manual_seed(0), [0.0], steps=s) for s in (1, 20))
    data = PixelCodec().decode(torch.cat([a, b]))
    nearest = lambda x: float(((x - data) ** 2).flatten(1).mean(1).min())  # noqa: E731
    assert nearest(many) < 1e-4 and nearest(one) > 1e-3  # seeds 0-4: one step 0.005-0.12 (mean-square) from either datum


def test_sdedit_needs_at_least_one_step():
    with pytest.raises(SettingError):
        sdedit_target(prior(Recording()), torch.rand(1, 3, 8, 8), torch.tensor([100]), None, [0.0], steps=0)


def test_an_inpainting_unet_sees_grey_where_it_fills():
    conditioned = MaskConditionedUNet(torch.nn.Identity())
    image, keep = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    keep[..., :8] = 1.0
    BlendedInpainter(prior(Recording()), InpaintConfig(steps=2), conditioned).inpaint(image, keep, 0.0)
    assert conditioned.condition is not None
    masked = conditioned.condition[:, 1:]  # [1 − m_z, E(masked image)]
    assert torch.equal(masked[..., 8:], torch.zeros_like(masked[..., 8:]))  # 0 in [-1, 1]: grey, not black (-1)
    assert torch.allclose(masked[..., :8], image[..., :8] * 2 - 1)


def test_loaded_ddim_never_clips_x0_even_when_the_checkpoint_says_so(tmp_path):
    from diffusers import DDIMScheduler

    DDIMScheduler(beta_schedule="scaled_linear", clip_sample=True).save_pretrained(tmp_path / "scheduler")
    src = Resolved(ModelSpec("SD1.5", "models.base", str(tmp_path)), str(tmp_path), True)
    scheduler = loading.load_scheduler(src, LoadOptions(), "ddim")
    assert isinstance(scheduler, DDIMScheduler) and scheduler.config.clip_sample is False


def test_texture_identity_tokens_at_every_azimuth_by_default():
    denoiser = Recording()
    identity = torch.randn(512)
    p = GuidedPrior(PriorConfig(), denoiser, PixelCodec(), no_text, ALPHAS)
    p.noise(torch.zeros(4, 3, 4, 4), torch.full((4,), 100), [0.0, 90.0, 180.0, -180.0], identity, None)
    assert len(denoiser.calls) == 1 and denoiser.calls[0]["identity"] is not None  # one group: all with identity
    denoiser.calls.clear()
    gated = GuidedPrior(PriorConfig(identity_max_azimuth=70.0), denoiser, PixelCodec(), no_text, ALPHAS)
    gated.noise(torch.zeros(2, 3, 4, 4), torch.full((2,), 100), [0.0, 180.0], identity, None)
    assert [c["identity"] is not None for c in denoiser.calls] == [True, False]


def test_texture_negative_prompt_is_the_authors():
    assert PriorConfig().negative_prompt == AUTHORS_NEGATIVE_PROMPT
    assert "worst quality" in AUTHORS_NEGATIVE_PROMPT and "white hair" not in AUTHORS_NEGATIVE_PROMPT


def test_texture_prompt_is_the_runs_without_the_geometry_suffix():
    p = GuidedPrior(PriorConfig(view_prompts=False), Recording(), PixelCodec(), no_text, ALPHAS, prompt="a portrait, skin texture")
    assert p.guidance.prompt == "a portrait, skin texture"
