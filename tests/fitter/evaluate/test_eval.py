"""Evaluation metrics on small models made here: LPIPS weight loading and values, CLIP-I with a
tiny random CLIP, the not-computed reasons and the summary tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common.errors import MissingModelError
from fitter.evaluate.protocol import clip_i, lpips_distance, summary_markdown, summary_rows
from guidance.lpips import LPIPS
from guidance.models.config import ModelsConfig

rng = np.random.default_rng(0)
PHOTO = rng.random((64, 64, 3)).astype(np.float32)


def lpips_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = LPIPS("alex")
    state = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}
    state.update({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))})
    return state


def test_lpips_is_zero_for_equal_images_and_grows_with_change(tmp_path):
    path = tmp_path / "lpips_alex.safetensors"
    save_file(lpips_weights(), str(path))
    models = ModelsConfig(lpips=str(path))
    same = lpips_distance(PHOTO, PHOTO, models)
    assert same["computed"] and same["value"] == pytest.approx(0.0, abs=1e-7)
    slightly = lpips_distance(PHOTO, np.clip(PHOTO + 0.05, 0, 1), models)["value"]
    very = lpips_distance(PHOTO, 1 - PHOTO, models)["value"]
    assert 0 < slightly < very


def test_lpips_pickle_weights_need_allow_pickle(tmp_path):
    path = tmp_path / "lpips_alex.pth"
    torch.save(lpips_weights(), path)
    with pytest.raises(MissingModelError, match="allow_pickle"):
        lpips_distance(PHOTO, PHOTO, ModelsConfig(lpips=str(path)))
    allowed = lpips_distance(PHOTO, 1 - PHOTO, ModelsConfig(lpips=str(path), allow_pickle=["lpips"]))
    assert allowed["computed"] and allowed["value"] > 0


def test_lpips_weights_missing_layers_is_one_line(tmp_path):
    path = tmp_path / "partial.safetensors"
    save_file({k: v for k, v in lpips_weights().items() if not k.startswith("lin")}, str(path))
    with pytest.raises(MissingModelError, match=r"\(models\.lpips\) lack lin0\.model\.1\.weight"):
        lpips_distance(PHOTO, PHOTO, ModelsConfig(lpips=str(path)))


def test_unconfigured_models_are_not_computed_with_reason():
    expected = {"computed": False, "value": None, "reason": "models.lpips is not set (an AlexNet LPIPS weight file)"}
    assert lpips_distance(PHOTO, PHOTO, ModelsConfig()) == expected
    result = clip_i(PHOTO, {"left": PHOTO}, ModelsConfig())
    assert not result["computed"] and result["value"] is None and "models.clip" in result["reason"]


def tiny_clip(folder) -> None:
    from transformers import CLIPConfig, CLIPModel

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=100)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)).save_pretrained(folder)


def test_clip_i_with_a_tiny_clip(tmp_path):
    tiny_clip(tmp_path / "clip")
    models = ModelsConfig(clip=str(tmp_path / "clip"))
    photo = (PHOTO * 255).astype(np.uint8)
    views = {"same": photo, "inverted": 255 - photo}
    result = clip_i(photo, views, models)
    assert result["computed"] and result["per_view"]["same"] == pytest.approx(1.0, abs=1e-5)
    assert result["per_view"]["inverted"] < 0.999
    assert result["value"] == pytest.approx(np.mean(list(result["per_view"].values())))


def test_clip_missing_folder_is_missing_model(tmp_path):
    with pytest.raises(MissingModelError, match="models.clip"):
        clip_i(PHOTO, {}, ModelsConfig(clip=str(tmp_path / "nothing")))


def _result(name: str, psnr: float, lpips: float | None) -> dict:
    metric = lambda v: {"computed": v is not None, "value": v, **({} if v is not None else {"reason": "models.lpips is not set"})}  # noqa: E731
    keys = ("identity_arcface_cosine", "identity_dlib_distance", "clip_i", "ssim")
    return {"run": f"/runs/{name}", "metrics": {"psnr_db": metric(psnr), "lpips": metric(lpips), **{k: metric(None) for k in keys}}}


def test_summary_rows_and_markdown():
    results = [_result("a", 20.0, 0.2), _result("b", 24.0, None)]
    rows = summary_rows(results)
    assert [r["run"] for r in rows] == ["a", "b", "mean"]
    assert rows[2]["psnr_db"] == "22.0000" and rows[2]["lpips"] == "0.2000" and rows[1]["lpips"] == ""
    text = summary_markdown(rows, results)
    assert text.splitlines()[0].startswith("| run | identity_arcface_cosine") and "| b | n/a" in text
    assert "* lpips: not computed: models.lpips is not set" in text
