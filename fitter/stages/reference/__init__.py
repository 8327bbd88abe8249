"""Stage `reference`: normal and depth maps of the reference view (`reference/normal.png`, `depth.png`).

Sources (`reference.source`): `generate`, `user`, `estimator`, `none` — see `maps.py`. Adding a
source touches `maps.produce_maps` and `contract.py`.
"""
