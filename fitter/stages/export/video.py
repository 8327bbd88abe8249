"""MP4 writing through the ffmpeg that imageio-ffmpeg ships (no system ffmpeg needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from common import atomic


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: int = 30) -> None:
    """Write uint8 (H, W, 3) frames (H, W even) as H.264 MP4, atomically."""
    import imageio.v2 as imageio

    def writer(tmp: Path) -> None:
        with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8,
                                pixelformat="yuv420p", macro_block_size=1) as video:
            for frame in frames:
                video.append_data(frame)

    atomic.write_with(path, writer)


def read_mp4_frames(path: Path) -> list[np.ndarray]:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [frame for frame in reader]
