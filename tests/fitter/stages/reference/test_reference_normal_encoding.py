"""The reference maps' normal encodings (guidance/normal_encoding.py) on a unit sphere: the normal-adapted
model's image is decoded with its table entry, and normal.png is written and read as REFERENCE_FILES."""

from __future__ import annotations

import numpy as np
import torch

from fitter.stages.reference.maps import encode_normals, normals_from_model_image
from guidance.normal_encoding import NORMAL_ADAPTED_SD, REFERENCE_FILES, decode, encode
from tests.helpers import sphere_normals


def test_normal_adapted_model_image_decodes_to_camera_frame_normals():
    normals, mask = sphere_normals()
    # the model generates on black ("black background" in its prompt), with its own signs
    image = encode(normals, mask, NORMAL_ADAPTED_SD) * mask.permute(2, 0, 1)
    decoded, valid = normals_from_model_image(image[0].permute(1, 2, 0).numpy())
    inside = mask[..., 0].numpy() > 0.5
    assert np.array_equal(valid, inside)
    assert np.abs(decoded[inside] - normals.numpy()[inside]).max() < 1e-5
    assert decoded[32, 62, 0] > 0.99 and decoded[2, 32, 1] > 0.99  # right edge faces +x, top edge +y


def test_normal_png_is_the_reference_files_encoding_and_reads_back():
    normals, mask = sphere_normals()
    inside = mask[..., 0].numpy() > 0.5
    png = encode_normals(normals.numpy(), inside, inside)
    expected = encode(normals, mask, REFERENCE_FILES)[0].permute(1, 2, 0).numpy()
    assert np.abs(png.astype(np.float64) / 255.0 - expected).max() <= 0.5 / 255.0 + 1e-6
    assert not png[~inside].any() and tuple(png[32, 32]) == (128, 128, 255) and tuple(png[32, 62]) == (255, 128, 128)
    read = decode(torch.from_numpy(png.astype(np.float32) / 255.0).permute(2, 0, 1), REFERENCE_FILES)[0].numpy()
    cosine = (read[inside] * normals.numpy()[inside]).sum(axis=-1)
    assert cosine.min() > 0.999
