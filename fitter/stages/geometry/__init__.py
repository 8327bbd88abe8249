"""Stage `geometry`: DMTet with a hash-grid SDF, sculpted by identity-aware score distillation and
the reference-view losses (`geometry/mesh.ply`, `geometry/geometry.json`). See `stage.py`."""
