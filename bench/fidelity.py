"""Fidelity of the offline preview on one photo: reference-view PSNR inside the mask, and dlib
identity distance at the front, ±30° and ±60°. Runs the whole preview; prints one JSON line last.

    python bench/fidelity.py [PHOTO] [--out DIR] [key=value ...]

Targets on the shipped photo: PSNR >= 25 dB, dlib distance <= 0.45 at the front and <= 0.55 at
±30° (0.6 is the usual same-person threshold).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"psnr_db": 25.0, "dlib_front": 0.45, "dlib_30": 0.55}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?", default=str(ROOT / "examples" / "astronaut.png"))
    parser.add_argument("--out", default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="fidelity_"))
    command = [sys.executable, str(ROOT / "run.py"), "--image", args.photo, "--config", str(ROOT / "configs" / "preview.yaml"),
               "--out", str(out), *args.overrides]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    wall = time.perf_counter() - start
    if result.returncode != 0:
        print(json.dumps({"error": f"run.py exited {result.returncode}", "out": str(out)}))
        return 1
    metrics = json.loads((out / "metrics.json").read_text())
    ident = metrics["identity"]
    summary = {
        "photo": args.photo,
        "wall_s": round(wall, 1),
        "stage_wall_s": metrics["stage_wall_s"],
        "psnr_db": round(metrics["reference"]["psnr_db"], 2),
        "ssim": round(metrics["reference"]["ssim"], 4),
        "dlib_front": ident.get("az+000_el+00"),
        "dlib_+30": ident.get("az+030_el+00"),
        "dlib_-30": ident.get("az-030_el+00"),
        "dlib_+60": ident.get("az+060_el+00"),
        "dlib_-60": ident.get("az-060_el+00"),
    }
    worst_30 = max((d for d in (summary["dlib_+30"], summary["dlib_-30"]) if d is not None), default=None)
    summary["targets_met"] = {
        "psnr_db": summary["psnr_db"] >= TARGETS["psnr_db"],
        "dlib_front": summary["dlib_front"] is not None and summary["dlib_front"] <= TARGETS["dlib_front"],
        "dlib_30": worst_30 is not None and summary["dlib_+30"] is not None and summary["dlib_-30"] is not None and worst_30 <= TARGETS["dlib_30"],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
