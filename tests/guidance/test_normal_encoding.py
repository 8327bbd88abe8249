"""The normal-map encodings of guidance/normal_encoding.py on a unit sphere seen head-on, per consumer."""

from __future__ import annotations

import pytest
import torch

from guidance.control import normal_control
from guidance.isd import ISDConfig
from guidance.normal_encoding import ENCODINGS, NORMAL_ADAPTED_SD, NORMAL_CONTROLNET, REFERENCE_FILES, decode, encode
from tests.helpers import sphere_normals as sphere

SIZE, RADIUS = 65, 30  # pixels: centre (32, 32); the sphere touches columns 2 and 62, rows 2 and 62
CENTRE, RIGHT, TOP = (32, 32), (32, 62), (2, 32)  # (row, column)


def pixel(image: torch.Tensor, at: tuple[int, int]) -> torch.Tensor:
    return image[0, :, at[0], at[1]]


@pytest.mark.parametrize(
    "encoding, centre, right, top, background",
    [
        (NORMAL_ADAPTED_SD, (0.5, 0.5, 1.0), (1.0, 0.5, 0.5), (0.5, 1.0, 0.5), (0.5, 0.5, 1.0)),
        (NORMAL_CONTROLNET, (0.5, 0.5, 1.0), (0.0, 0.5, 0.5), (0.5, 1.0, 0.5), (0.0, 0.0, 0.0)),
        (REFERENCE_FILES, (0.5, 0.5, 1.0), (1.0, 0.5, 0.5), (0.5, 1.0, 0.5), (0.0, 0.0, 0.0)),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_sphere_colours(encoding, centre, right, top, background):
    normals, mask = sphere()
    image = encode(normals, mask, encoding)
    assert image.shape == (1, 3, SIZE, SIZE)
    for at, expected in ((CENTRE, centre), (RIGHT, right), (TOP, top)):
        assert torch.allclose(pixel(image, at), torch.tensor(expected), atol=1e-6), (encoding.name, at)
    outside = ~mask[..., 0].bool()
    assert torch.equal(image[0].permute(1, 2, 0)[outside], torch.tensor(background).expand(int(outside.sum()), 3))
    assert torch.equal(pixel(image, (0, 0)), torch.tensor(background))


@pytest.mark.parametrize("encoding", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_decode_inverts_encode_inside_the_mask(encoding):
    normals, mask = sphere()
    decoded = decode(encode(normals, mask, encoding), encoding)[0]
    inside = mask[..., 0].bool()
    assert torch.allclose(decoded[inside], normals[inside], atol=1e-5)
    batch = torch.stack([normals, normals.flip(1)])  # (B, H, W, 3), the second mirrored
    decoded = decode(encode(batch, torch.stack([mask, mask.flip(1)]), encoding), encoding)
    assert torch.allclose(decoded[1][inside.flip(1)], batch[1][inside.flip(1)], atol=1e-5)


@pytest.mark.parametrize("encoding", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_gradients_flow_through_encode(encoding):
    normals, mask = sphere(17, 7)
    normals.requires_grad_(True)
    mask.requires_grad_(True)
    image = encode(normals, mask, encoding)
    weights = torch.randn_like(image)
    (image * weights).sum().backward()
    inside = mask[..., 0].bool().detach()
    expected = 0.5 * weights[0].permute(1, 2, 0) * torch.tensor(encoding.axes)  # d rgb / d n = axes / 2 inside
    assert torch.allclose(normals.grad[inside], expected[inside])
    assert mask.grad is not None and mask.grad.abs().sum() > 0  # coverage (antialiased edges) gets a gradient too


def test_normal_control_is_the_controlnet_entry():
    normals, mask = sphere()
    assert torch.equal(normal_control(normals, mask), encode(normals, mask, NORMAL_CONTROLNET))
    assert torch.equal(normal_control(normals), encode(normals, None, NORMAL_CONTROLNET))


def test_isd_encoding_names_are_table_entries():
    hero = ISDConfig()
    assert ENCODINGS[hero.normal_encoding] is NORMAL_ADAPTED_SD and hero.model == "normal_sd"
    assert ENCODINGS["normal_controlnet"] is NORMAL_CONTROLNET
    with pytest.raises(Exception, match="normal_encoding"):
        ISDConfig(normal_encoding="bae")  # type: ignore[arg-type]
