"""`head_rigged.fbx` from `head_rigged.glb` through Blender (bpy, optional: pip install -e '.[blender]').

Blender runs in a child process (bpy is ~370 MB and keeps global state; a crash there must not take the fit
with it); it imports the GLB and exports FBX with its armature, shape keys and texture."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from common.atomic import atomic_path
from common.errors import UserError

TIMEOUT_S = 600
SCRIPT = """
import sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
bpy.ops.export_scene.fbx(filepath=sys.argv[2], add_leaf_bones=False, bake_anim=True, path_mode="COPY",
                         embed_textures=True, mesh_smooth_type="FACE")
"""


def bpy_available() -> bool:
    return importlib.util.find_spec("bpy") is not None


def glb_to_fbx(glb: Path, fbx: Path) -> None:
    """Convert with Blender; a UserError when bpy is missing or Blender fails."""
    if not bpy_available():
        raise UserError("rig.fbx=true needs Blender as a Python module (pip install -e '.[blender]')")
    with atomic_path(fbx) as tmp:
        result = subprocess.run([sys.executable, "-c", SCRIPT, str(glb), str(tmp)], capture_output=True, text=True,
                                timeout=TIMEOUT_S)
        if result.returncode != 0 or Path(tmp).stat().st_size == 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"rig: Blender could not write {fbx.name}: {last}")
