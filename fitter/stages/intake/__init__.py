"""Stage `intake`: one portrait photo in, a `subject/` folder out (crop, mask, landmarks, camera, identity).

`subject.run_intake(image_path, cfg, subject_dir)` writes the folder; `identity.dlib_embedding` and
`identity.arcface_embedding` compute the identity descriptors (also used by `run.py eval`).
"""
