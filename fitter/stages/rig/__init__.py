"""Stage `rig`: the production head, the sculpt wrapped onto the parametric head's topology with rig,
blendshapes, a neutral expression, the shared UV layout and the hair as its own mesh (see stage.py)."""
