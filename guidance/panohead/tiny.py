"""A tiny PanoHead generator of the real architecture (random weights): the `tiny-random`
stand-in for tests and dry runs. Same classes as the real model, small sizes: w 16, tri-grid
3 × 32 × 3 at 32², 8 + 8 samples per ray at 32², super-resolution to 64²."""

from __future__ import annotations

import torch

from guidance.panohead.generator import GeneratorConfig, PanoHeadGenerator

TINY_KWARGS = dict(
    z_dim=16, c_dim=25, w_dim=16, img_resolution=64, img_channels=3, channel_base=256, channel_max=32, sr_num_fp16_res=0,
    mapping_kwargs={"num_layers": 2}, sr_channels=[16, 16], neural_rendering_resolution=32, architecture="skip",
    rendering_kwargs=dict(triplane_size=32, triplane_depth=3, superresolution_module="training.superresolution.SuperresolutionHybrid2X",
                          depth_resolution=8, depth_resolution_importance=8, ray_start="auto", ray_end="auto", box_warp=1.0,
                          use_torgb_raw=True, decoder_activation="none", use_background=True, c_scale=1.0,
                          c_gen_conditioning_zero=False, sr_antialias=True, superresolution_noise_mode="none"),
)


def tiny_generator(seed: int = 0) -> PanoHeadGenerator:
    torch.manual_seed(seed)
    return PanoHeadGenerator(GeneratorConfig.from_init_kwargs(TINY_KWARGS)).eval()
