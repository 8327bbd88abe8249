"""The default inpainting trajectory sees (nearly) every texel of a head that any fitting view sees."""

from __future__ import annotations

from fitter.stages.init.sdf_grid import GridSDF
from fitter.stages.init.stage import grid_to_mesh
from fitter.stages.init.template_head import TemplateHead
from fitter.stages.texture.inpaint import trajectory_coverage, visible_texels
from representations.cameras import OrbitView, inpainting_trajectory
from representations.mesh import UnwrapOptions, unwrap_uv
from representations.render import texel_surface


def test_default_trajectory_covers_the_visible_head():
    head = grid_to_mesh(GridSDF.from_function(TemplateHead().sdf, 40, 1.3).closed())
    mesh = unwrap_uv(head, 256, UnwrapOptions(padding=2, max_faces=4000))
    surface = texel_surface(mesh.verts, mesh.faces, mesh.uv, mesh.uv_faces, 256)
    # Probes: every 30 degrees of azimuth over the geometry stage's elevation range [-15, 45].
    probes = [OrbitView(a, e, 3.8, 30.0) for a in range(-180, 180, 30) for e in (-15.0, 5.0, 25.0, 45.0)]
    seeable = visible_texels(surface, probes, size=192)
    assert trajectory_coverage(surface, inpainting_trajectory(), seeable, size=192) >= 0.98
    # The measure can fail: without the five views from above the top of the head is missed.
    assert trajectory_coverage(surface, inpainting_trajectory()[:10], seeable, size=192) < 0.95
