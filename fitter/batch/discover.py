"""Which photos a batch fits: every image file in a folder, or the paths listed in a text file."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from common.errors import UserError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp"})


def find_images(source: Path) -> list[Path]:
    """Photos named by `source`: a folder (image files in it, sorted, not recursive; hidden files
    skipped) or a list file (one path per line, relative to the list's folder; `#` comments and
    blank lines allowed). Each photo's stem names its output folder, so stems must be unique."""
    source = Path(source)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file())
    elif source.is_file():
        images = read_list(source)
    else:
        raise UserError(f"--images {source}: no such folder or list file")
    if not images:
        raise UserError(f"--images {source}: no photos found")
    check_unique_stems(images)
    check_visible_stems(images)
    return images


def read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the list {path}: {exc}") from None
    images = []
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            image = Path(entry).expanduser()
            images.append(image if image.is_absolute() else path.parent / image)
    return images


def check_unique_stems(images: list[Path]) -> None:
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for image in images:
        by_stem[image.stem].append(image)
    clashes = {stem: paths for stem, paths in by_stem.items() if len(paths) > 1}
    if clashes:
        parts = "; ".join(f"{stem}: {', '.join(map(str, paths))}" for stem, paths in sorted(clashes.items()))
        raise UserError(f"photos with the same name would share an output folder ({parts}); rename them")


def check_visible_stems(images: list[Path]) -> None:
    """A photo named `.batch.png` would be written into ROOT/.batch, the batch's own folder; hidden
    names are refused (a folder's hidden files are skipped already)."""
    hidden = [str(image) for image in images if image.stem.startswith(".")]
    if hidden:
        raise UserError(f"photos whose names start with '.' would be written into hidden folders of ROOT "
                        f"(e.g. ROOT/.batch, the batch's own): {', '.join(hidden[:5])}; rename them")
