"""guidance.lpips, the one LPIPS: each user's weight-file problems name that user's setting."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from common.errors import MissingModelError
from fitter.stages.texture.refine_losses import perceptual_loss as texture_perceptual_loss
from guidance.lpips import LPIPS
from guidance.panohead.perceptual import perceptual_loss as gan_perceptual_loss


def weights_without_heads(trunk: str, path) -> str:
    save_file({k: v for k, v in LPIPS(trunk).state_dict().items() if k.startswith("features.")}, str(path))
    return str(path)


@pytest.mark.parametrize("make, key", [
    (lambda path: gan_perceptual_loss(path), "init.gan.lpips_weights"),
    (lambda path: texture_perceptual_loss(path), "fit.texture.lpips_weights"),
], ids=["gan", "texture"])
def test_missing_heads_name_the_setting(tmp_path, make, key):
    path = weights_without_heads("vgg16", tmp_path / "vgg.safetensors")
    with pytest.raises(MissingModelError, match=rf"LPIPS vgg16 weights .*vgg.safetensors \({key}\) lack lin0\.model\.1\.weight"):
        make(path)


def test_both_trunks_are_zero_for_equal_images():
    torch.manual_seed(0)
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    for trunk in ("vgg16", "alex"):
        net = LPIPS(trunk).eval()
        for lin in net.lins:
            torch.nn.init.uniform_(lin.weight, 0.0, 1.0)  # LPIPS heads are non-negative
        with torch.no_grad():
            same, different = net(a, a), net(a, b)
        assert same.shape == (2,) and torch.allclose(same, torch.zeros(2), atol=1e-6) and (different > 0).all()
