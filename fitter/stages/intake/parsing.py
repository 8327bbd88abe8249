"""Face-parsing segmentation (a transformers semantic-segmentation model, e.g. a SegFormer)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import MissingModelError
from guidance.models.config import ModelsConfig

BACKGROUND_NAMES = {"background", "bg", "cloth", "clothes", "clothing"}
"""Labels that are not head. Clothing is dropped too: the neck cut alone leaves collars in."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 512


@dataclass
class Parser:
    model: object
    size: tuple[int, int]
    mean: np.ndarray
    std: np.ndarray
    background_ids: list[int]


def _preprocessing(folder: Path) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Input size and normalisation from the model's preprocessor_config.json, if it has one.

    Read by hand rather than through AutoImageProcessor, whose fast processors need torchvision."""
    cfg_path = folder / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    size = cfg.get("size", DEFAULT_SIZE)
    if isinstance(size, dict):
        hw = (int(size.get("height", size.get("shortest_edge", DEFAULT_SIZE))), int(size.get("width", size.get("shortest_edge", DEFAULT_SIZE))))
    else:
        hw = (int(size), int(size))
    mean = np.asarray(cfg.get("image_mean", IMAGENET_MEAN), dtype=np.float32)
    std = np.asarray(cfg.get("image_std", IMAGENET_STD), dtype=np.float32)
    return hw, mean, std


def _background_ids(id2label: dict) -> list[int]:
    ids = [int(i) for i, name in id2label.items() if str(name).strip().lower() in BACKGROUND_NAMES]
    return ids or [0]


@functools.lru_cache(maxsize=2)
def load_parser(name: str, cache_dir: str | None, allow_pickle: bool) -> Parser:
    try:
        from transformers import AutoModelForSemanticSegmentation

        model = AutoModelForSemanticSegmentation.from_pretrained(name, cache_dir=cache_dir, use_safetensors=None if allow_pickle else True)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise MissingModelError(f"cannot load the face-parsing model {name!r} (models.face_parsing): {detail}") from None
    model.eval()
    size, mean, std = _preprocessing(Path(name))  # hub ids (no local folder) get the defaults
    return Parser(model, size, mean, std, _background_ids(model.config.id2label))


def parsing_foreground(rgb: np.ndarray, models: ModelsConfig) -> np.ndarray:
    """(H, W) bool: pixels whose most likely label is not a background label."""
    import cv2
    import torch

    parser = load_parser(str(models.face_parsing), models.cache_dir, models.pickle_allowed("face_parsing"))
    h, w = rgb.shape[:2]
    x = cv2.resize(rgb, (parser.size[1], parser.size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - parser.mean) / parser.std
    with torch.no_grad():
        logits = parser.model(pixel_values=torch.from_numpy(x.transpose(2, 0, 1))[None]).logits
        logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    labels = logits[0].argmax(0).numpy()
    return ~np.isin(labels, parser.background_ids)
