"""Intake: one portrait photo in, a `subject/` folder out (crop, mask, landmarks, camera, identity).

Public API:
  run_intake(image_path, cfg, subject_dir, prompt=None) -> dict   (the subject.json content)
  dlib_embedding(rgb_uint8, face_box=None) -> (128,) float32 or None
"""

from fitter.stages.intake.identity import dlib_embedding
from fitter.stages.intake.subject import run_intake

__all__ = ["run_intake", "dlib_embedding"]
