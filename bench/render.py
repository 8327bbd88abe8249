"""Rasterizer benchmark. Run: /work/venv/bin/python bench/render.py

Times our torch backend (numba raster) on a ~50k-triangle head-sized ellipsoid at 256x256:
mask + normal + depth, forward + backward of a scalar loss on all three, median over runs after a
warm-up (so numba's compile/cache load is excluded). On CUDA with nvdiffrast it also times both
backends at 512x512 and reports their mask IoU. Prints one JSON object on its last line.

This box's 2 cores are shared with other sessions. Under that load torch's OpenMP threads
spin-wait for descheduled peers at every parallel op and a 45 ms render measured 1.3 s, so the
script sets OMP_WAIT_POLICY=PASSIVE for itself unless the caller set it (reported in the JSON,
with the load average and a single-thread timing).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its OpenMP pool

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from representations.cameras import Camera  # noqa: E402
from representations.render import Rasterizer, nvdiffrast_available  # noqa: E402

HEAD_RADII = (0.7, 0.9, 0.8)
PASSES = ("mask", "normal", "depth")


def geodesic_sphere(frequency: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere from an icosahedron whose faces are split into frequency^2 triangles
    (20 * frequency^2 faces; frequency 50 gives 50,000)."""
    t = (1.0 + 5**0.5) / 2.0
    corners = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    ico_faces = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]]
    n = frequency
    grid = [(i, j) for i in range(n + 1) for j in range(n + 1 - i)]
    local = {ij: k for k, ij in enumerate(grid)}
    local_faces = []
    for i in range(n):
        for j in range(n - i):
            local_faces.append([local[i, j], local[i + 1, j], local[i, j + 1]])
            if i + j < n - 1:
                local_faces.append([local[i + 1, j], local[i + 1, j + 1], local[i, j + 1]])
    weights = np.array([[n - i - j, i, j] for i, j in grid], float) / n
    points, faces = [], []
    for face in ico_faces:
        faces.append(np.asarray(local_faces) + len(points) * len(grid))
        points.append(weights @ corners[face])
    points = np.concatenate(points)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    unique, inverse = np.unique(np.round(points, 9), axis=0, return_inverse=True)
    return unique, inverse.reshape(-1)[np.concatenate(faces)]


def head_mesh(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    points, faces = geodesic_sphere(50)
    vertices = torch.tensor(points * np.asarray(HEAD_RADII), dtype=torch.float32, device=device)
    return vertices, torch.tensor(faces, dtype=torch.long, device=device)


def forward_backward(rasterizer: Rasterizer, vertices: torch.Tensor, faces: torch.Tensor, camera: Camera) -> None:
    v = vertices.detach().requires_grad_()
    out = rasterizer.render(v, faces, camera, PASSES)
    loss = out["mask"].mean() + out["normal"].mean() + out["depth"].mean()
    loss.backward()


def median_ms(fn, runs: int = 10, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def cuda_comparison(camera: Camera) -> dict:
    vertices, faces = head_mesh("cuda")
    ours, theirs = Rasterizer("torch"), Rasterizer("nvdiffrast")
    result = {
        "torch_cuda_ms_fwd_bwd_512_50k": median_ms(lambda: forward_backward(ours, vertices, faces, camera)),
        "nvdiffrast_ms_fwd_bwd_512_50k": median_ms(lambda: forward_backward(theirs, vertices, faces, camera)),
    }
    with torch.no_grad():
        a = ours.render(vertices, faces, camera, ("mask",))["mask"] > 0.5
        b = theirs.render(vertices, faces, camera, ("mask",))["mask"] > 0.5
    result["mask_iou_torch_vs_nvdiffrast_512"] = float((a & b).sum() / (a | b).sum())
    return result


def main() -> None:
    vertices, faces = head_mesh("cpu")
    camera = Camera.orbit(30.0, 10.0, 3.0, 40.0, 256)
    rasterizer = Rasterizer("torch")
    result = {
        "faces": int(faces.shape[0]),
        "threads": torch.get_num_threads(),
        "torch_cpu_ms_fwd_bwd_256_50k": median_ms(lambda: forward_backward(rasterizer, vertices, faces, camera)),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    result["torch_cpu_ms_fwd_bwd_256_50k_1thread"] = median_ms(lambda: forward_backward(rasterizer, vertices, faces, camera))
    torch.set_num_threads(threads)
    if nvdiffrast_available():
        result.update(cuda_comparison(camera.resized(512)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
