"""Stage `init`: a starting head in the world frame (`init/sdf.npz`, `init/mesh.ply`, `init/init.json`).

Kinds (`init.kind`): `parametric` (default), `template`, `mesh`, `gan_inversion`, `multiview` — see `stage.py`. Adding a
kind touches `stage.run` and `contract.py`.
"""
