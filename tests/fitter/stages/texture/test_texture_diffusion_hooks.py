"""The optional parts of diffusion texturing: an ONNX super-resolution model, an inpainting UNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.errors import MissingModelError
from fitter.stages.texture.super_resolution import resize_valid, upscale_texture
from guidance.denoiser import SDDenoiser
from guidance.inpaint import BlendedInpainter, InpaintConfig, MaskConditionedUNet
from guidance.sdedit import GuidedPrior, PriorConfig


def nearest_x2_onnx(path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    scales = numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "scales")
    node = helper.make_node("Resize", ["image", "", "scales"], ["upscaled"], mode="nearest")
    graph = helper.make_graph([node], "x2", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "H", "W"])],
                              [helper.make_tensor_value_info("upscaled", TensorProto.FLOAT, [1, 3, "H2", "W2"])], initializer=[scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_super_resolution_hook_runs_the_configured_onnx_model(tmp_path):
    nearest_x2_onnx(tmp_path / "x2.onnx")
    texture = torch.rand(16, 16, 3)
    up = upscale_texture(texture, str(tmp_path / "x2.onnx"))
    assert up.shape == (32, 32, 3) and torch.equal(up[::2, ::2], texture)
    valid = torch.zeros(16, 16, dtype=torch.bool)
    valid[4:8, 4:8] = True
    assert int(resize_valid(valid, 32).sum()) == 64
    with pytest.raises(MissingModelError):
        upscale_texture(texture, str(tmp_path / "missing.onnx"))


def test_inpainting_unet_sees_mask_and_masked_image_channels():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=7, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4).eval()
    conditioned = MaskConditionedUNet(unet)

    class PixelCodec:
        def encode(self, images):
            return images * 2.0 - 1.0

        def decode(self, latents):
            return ((latents + 1.0) * 0.5).clamp(0.0, 1.0)

    alphas = torch.cumprod(1.0 - torch.linspace(1e-4, 0.02, 1000), dim=0)
    prior = GuidedPrior(PriorConfig(), SDDenoiser(conditioned), PixelCodec(), lambda p: torch.zeros(len(p), 77, 8), alphas)
    image, keep = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    keep[..., :8] = 1.0
    out = BlendedInpainter(prior, InpaintConfig(steps=2), conditioned).inpaint(image, keep, 0.0)
    assert out.shape == image.shape and torch.equal(out[..., :8], image[..., :8]) and torch.isfinite(out).all()
    assert conditioned.condition.shape == (1, 4, 16, 16)  # mask to fill + masked-image latents
