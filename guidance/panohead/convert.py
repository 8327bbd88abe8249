"""Checkpoint files: the official PanoHead pickle (read with the restricted unpickler) or our
one-time safetensors conversion of it.

The safetensors file holds the generator's (``G_ema``) parameters and buffers under the official
dotted names (``backbone.mapping.fc0.weight`` ...) and its constructor keyword arguments as JSON in
the metadata (``init_kwargs``), with the class name and the SHA-256 of the source pickle.

Usage: ``python run.py convert-panohead CKPT.pkl OUT.safetensors`` (`convert_checkpoint`). OUT must
end in ``.safetensors`` and must not be the
source; missing parent folders are created. OUT is written atomically (a temporary file renamed
into place), so a failed conversion leaves no partial file and an existing OUT untouched. Every
failure a user can cause raises a `FileNotFoundError` or a ValueError (`CheckpointError`,
`OutputLocationError`) with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from common import atomic
from guidance.panohead.errors import CheckpointError, OutputLocationError
from guidance.panohead.pickle_vm import LIMITS, PickleLimits
from guidance.panohead.unpickle import NetworkWeights, extract_network, load_restricted
from guidance.weights import read_safetensors, read_safetensors_metadata

FORMAT = "headfit-panohead-1"
OUT_SUFFIX = ".safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _checked_source(path: Path) -> int:
    """The size of an existing, regular checkpoint file."""
    try:
        if not path.exists():
            raise FileNotFoundError(f"PanoHead checkpoint {path} does not exist")
        if not path.is_file():
            raise CheckpointError(f"PanoHead checkpoint {path} is not a file")
        return path.stat().st_size
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and exc.errno is None:
            raise
        raise CheckpointError(f"cannot read PanoHead checkpoint {path}: {exc.strerror or exc}") from None


def read_pickle_weights(path: str | Path, network: str = "G_ema", limits: PickleLimits = LIMITS) -> NetworkWeights:
    """The generator of an official network pickle, read without executing anything in it."""
    path = Path(path)
    size = _checked_source(path)
    return extract_network(load_restricted(path, limits), network, limits, max_tensor_bytes=size + (1 << 20))


def save_safetensors(weights: NetworkWeights, out: str | Path, source_sha256: str = "") -> None:
    """Write `weights` to `out` atomically (missing parent folders are created)."""
    from safetensors.torch import save

    tensors = {name: tensor.contiguous() for name, tensor in weights.state.items()}
    metadata = {"format": FORMAT, "class_name": weights.class_name, "init_kwargs": json.dumps(weights.init_kwargs),
                "source_sha256": source_sha256}
    data = save(tensors, metadata=metadata)  # serialised first, so every write error is an OSError
    out = Path(out)
    try:
        atomic.write_bytes(out, data)
    except OSError as exc:
        raise OutputLocationError(f"cannot write {out}: {exc.strerror or exc}") from None


def read_safetensors_weights(path: str | Path) -> NetworkWeights:
    metadata = read_safetensors_metadata(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a PanoHead conversion made by guidance.panohead.convert (format {metadata.get('format')!r})")
    try:
        init_kwargs = json.loads(metadata["init_kwargs"])
        class_name = metadata["class_name"]
    except (KeyError, ValueError, RecursionError):
        raise CheckpointError(f"{path} has damaged PanoHead metadata (class_name, init_kwargs)") from None
    if not isinstance(init_kwargs, dict):
        raise CheckpointError(f"{path} has damaged PanoHead metadata (init_kwargs is not a dict)")
    return NetworkWeights(class_name, init_kwargs, read_safetensors(path))


def read_weights(path: str | Path) -> NetworkWeights:
    """Weights from a ``.safetensors`` conversion or (restricted) from the official ``.pkl``."""
    path = Path(path)
    _checked_source(path)
    if path.suffix == OUT_SUFFIX:
        return read_safetensors_weights(path)
    return read_pickle_weights(path)


def check_output(out: Path, source: Path) -> None:
    """Refuse, before any work, an output that would replace the source or cannot be a file."""
    if out.suffix != OUT_SUFFIX:
        raise OutputLocationError(f"the output {out} must end in {OUT_SUFFIX}")
    if out.is_dir():
        raise OutputLocationError(f"the output {out} is a folder; give a file name ending in {OUT_SUFFIX}")
    if out.exists() and source.exists() and os.path.samefile(out, source):
        raise OutputLocationError(f"the output {out} is the source checkpoint; give another file name")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OutputLocationError(f"cannot write {out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputLocationError(f"cannot write {out}: no write permission on {folder}")


def convert_checkpoint(pickle_path: str | Path, out: str | Path) -> NetworkWeights:
    """One-time conversion: official pickle -> safetensors (tensors + hyper-parameters)."""
    pickle_path, out = Path(pickle_path), Path(out)
    _checked_source(pickle_path)
    check_output(out, pickle_path)
    weights = read_pickle_weights(pickle_path)
    save_safetensors(weights, out, _sha256(pickle_path))
    return weights
