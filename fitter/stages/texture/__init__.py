"""Stage `texture`: UVs and a texture for the fitted geometry (`texture/head.obj`, `texture/texture.json`).
Modes (`fit.texture.mode`): `projection` and `diffusion` — see `stage.py`."""
