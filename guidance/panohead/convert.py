"""Checkpoint files: the official PanoHead pickle (read with the restricted unpickler) or our
one-time safetensors conversion of it.

The safetensors file holds the generator's (``G_ema``) parameters and buffers under the official
dotted names (``backbone.mapping.fc0.weight`` ...) and its constructor keyword arguments as JSON in
the metadata (``init_kwargs``), with the class name and the SHA-256 of the source pickle.

Usage: ``python -m guidance.panohead.convert CKPT.pkl OUT.safetensors`` (or ``python run.py
convert-panohead CKPT.pkl OUT.safetensors``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from guidance.panohead.unpickle import NetworkWeights, extract_network, load_restricted

FORMAT = "headfit-panohead-1"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_pickle_weights(path: str | Path, network: str = "G_ema") -> NetworkWeights:
    """The generator of an official network pickle, read without executing anything in it."""
    return extract_network(load_restricted(Path(path)), network)


def save_safetensors(weights: NetworkWeights, out: str | Path, source_sha256: str = "") -> None:
    from safetensors.torch import save_file

    tensors = {name: tensor.contiguous() for name, tensor in weights.state.items()}
    metadata = {"format": FORMAT, "class_name": weights.class_name, "init_kwargs": json.dumps(weights.init_kwargs),
                "source_sha256": source_sha256}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=metadata)


def read_safetensors_weights(path: str | Path) -> NetworkWeights:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a PanoHead conversion made by guidance.panohead.convert (format {metadata.get('format')!r})")
    return NetworkWeights(metadata["class_name"], json.loads(metadata["init_kwargs"]), load_file(str(path)))


def read_weights(path: str | Path) -> NetworkWeights:
    """Weights from a ``.safetensors`` conversion or (restricted) from the official ``.pkl``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"PanoHead checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        return read_safetensors_weights(path)
    return read_pickle_weights(path)


def convert_checkpoint(pickle_path: str | Path, out: str | Path) -> NetworkWeights:
    """One-time conversion: official pickle -> safetensors (tensors + hyper-parameters)."""
    weights = read_pickle_weights(pickle_path)
    save_safetensors(weights, out, _sha256(Path(pickle_path)))
    return weights


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m guidance.panohead.convert") -> int:
    parser = argparse.ArgumentParser(prog=prog,
                                     description="Convert the official PanoHead network pickle to safetensors without running its code.")
    parser.add_argument("checkpoint", type=Path, help="the official .pkl (e.g. easy-khair-180-gpc0.8-trans10-025000.pkl)")
    parser.add_argument("out", type=Path, help="the .safetensors file to write")
    args = parser.parse_args(argv)
    weights = convert_checkpoint(args.checkpoint, args.out)
    print(f"wrote {args.out}: {weights.class_name}, {len(weights.state)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
