"""Hash-grid throughput: 2^16 points forward + backward, default Instant-NGP config, per backend.

Prints one JSON object on its last line: points/s (median of runs) per available backend.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from representations.hashgrid import HashGridConfig, HashGridEncoding, tcnn_available  # noqa: E402

N_POINTS = 2**16
RUNS = 7


def points_per_second(backend: str, device: str) -> float:
    encoding = HashGridEncoding(HashGridConfig(), backend=backend).to(device)
    points = torch.rand(N_POINTS, 3, device=device) * 2 - 1
    weights = torch.randn(N_POINTS, encoding.out_dim, device=device)
    times = []
    for run in range(RUNS + 1):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        encoding.params.grad = None
        (encoding(points) * weights).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        if run:  # the first run warms caches / kernels
            times.append(time.perf_counter() - start)
    return N_POINTS / statistics.median(times)


def main() -> None:
    result = {"points": N_POINTS, "runs": RUNS, "torch_threads": torch.get_num_threads()}
    result["torch_cpu_pts_per_s"] = round(points_per_second("torch", "cpu"))
    if torch.cuda.is_available():
        result["torch_cuda_pts_per_s"] = round(points_per_second("torch", "cuda"))
        result["device"] = torch.cuda.get_device_name()
        if tcnn_available():
            result["tcnn_cuda_pts_per_s"] = round(points_per_second("tcnn", "cuda"))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
