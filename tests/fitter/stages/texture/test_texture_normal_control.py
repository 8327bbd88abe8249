"""The texture stage feeds the normal ControlNet its own encoding (guidance/normal_encoding.py's
NORMAL_CONTROLNET: x flipped, on black), in inpainting and in refinement, whatever the ISD prior uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fitter.config import InpaintSettings, RefineSettings
from fitter.stages.texture.inpaint import view_inputs
from fitter.stages.texture.refine import Reference, RefineStep, TextureLogits
from guidance.normal_encoding import NORMAL_CONTROLNET, encode
from representations.cameras import Camera
from representations.mesh import UnwrapOptions, icosphere, unwrap_uv
from representations.render import Rasterizer, render

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = 64


@pytest.fixture(scope="module")
def sphere():
    # radius 0.5: inside every refinement view (camera distance >= 2.5, fov >= 30)
    return unwrap_uv(icosphere(subdivisions=3, radius=0.5), 128, UnwrapOptions(padding=2))


def check_controlnet_sphere(control: torch.Tensor, normal_cam: torch.Tensor, mask: torch.Tensor) -> None:
    """The control image is NORMAL_CONTROLNET's of the render; on the sphere: lavender centre, no red at
    the right edge (red = facing image-left), green at the top, black background."""
    assert torch.equal(control, encode(normal_cam, mask, NORMAL_CONTROLNET))
    inside = mask[..., 0] > 0.999
    rows, cols = torch.nonzero(inside, as_tuple=True)
    r, c = int(rows.float().mean().round()), int(cols.float().mean().round())
    centre, right = control[0, :, r, c], control[0, :, r, int(cols[rows == r].max())]
    left, top = control[0, :, r, int(cols[rows == r].min())], control[0, :, int(rows[cols == c].min()), c]
    assert torch.allclose(centre, torch.tensor([0.5, 0.5, 1.0]), atol=0.05)
    assert float(right[0]) < 0.1 and float(left[0]) > 0.9 and float(top[1]) > 0.9
    assert torch.equal(control[0, :, 0, 0], torch.zeros(3))


def test_inpainting_view_control_is_the_controlnet_encoding(sphere):
    camera = Camera.orbit(30.0, 10.0, 3.8, 30.0, SIZE)
    texture, coverage = torch.full((128, 128, 3), 0.5), torch.zeros(128, 128)
    view = view_inputs(sphere, camera, texture, coverage, InpaintSettings(gen_size=SIZE))
    out = render(sphere.verts, sphere.faces, camera, ("mask", "normal_cam"), backend="auto")
    check_controlnet_sphere(view.control, out["normal_cam"], out["mask"])


def test_refinement_control_is_the_controlnet_encoding(sphere):
    seen: list[tuple[torch.Tensor, Camera]] = []

    def target(image, t, camera, control):
        seen.append((control, camera))
        return image

    front = Camera.orbit(0.0, 0.0, 3.8, 30.0, SIZE)
    ref = render(sphere.verts, sphere.faces, front, ("rgb", "mask"), uv=sphere.uv, uv_faces=sphere.uv_faces,
                 texture=torch.full((128, 128, 3), 0.5))
    rasterizer = Rasterizer("torch")
    step = RefineStep(RefineSettings(render_size=SIZE, lambda_perceptual=0.0), sphere, TextureLogits(torch.full((128, 128, 3), 0.5)),
                      target, Reference(ref["rgb"], ref["mask"], front), torch.nn.Identity(), np.random.default_rng(0), rasterizer)
    step(0)  # even steps are SDEdit steps
    control, camera = seen[0]
    out = rasterizer.render(sphere.verts, sphere.faces, camera, ("mask", "normal_cam"))
    check_controlnet_sphere(control, out["normal_cam"], out["mask"])
