"""Stage `export`: the deliverables in OUT (`head.glb`, `head.obj`, views, turntable, metrics, report)."""
