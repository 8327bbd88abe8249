"""`python run.py convert-weights SRC DST`: pickle weights → safetensors, without running the pickle.

Several public checkpoints ship torch pickles only (h94/IP-Adapter-FaceID's ``.bin`` files, the
HumanNorm ``xanderhuang/*-adapted-sd1.5`` folders). A pickle can run code when loaded, so the loaders
refuse them unless ``models.allow_pickle`` names the model; this converts them once instead:

* SRC is a pickle file or a folder (a diffusers/hub layout). Every pickle weight file (`.bin`, `.pt`,
  `.pth`, `.ckpt`) is read with the project's one restricted reader (`guidance.weights.unpickle_plain`,
  ``torch.load(weights_only=True)``: tensors and plain containers only, nothing runs; anything else is
  refused with one line), reduced to its tensors (an IP-Adapter's nested ``{"image_proj": …,
  "ip_adapter": …}`` flattened to ``image_proj.<k>``/``ip_adapter.<k>`` as `ip_adapter.flatten` does;
  a Lightning ``state_dict`` unwrapped; other nested dicts joined with dots) and written atomically as
  safetensors under the same relative name with the suffix changed (`registry.safetensors_name`:
  ``diffusion_pytorch_model.bin`` → ``diffusion_pytorch_model.safetensors``, ``pytorch_model.bin`` →
  ``model.safetensors``, ``x.fp16.bin`` → ``x.fp16.safetensors``; a sharded checkpoint's index is
  rewritten to the new shard names). A pickle whose safetensors twin SRC already holds is not read.
  Conversions go first and the top-level ``.json`` files (what `registry.locate` probes for) last.
* Every other file (configs, tokenizer files, existing safetensors) is copied; hidden files and other
  frameworks' weights (Flax ``.msgpack``, TensorFlow ``.h5``) are left out.
* DST is a folder (for a file SRC it may also be the ``.safetensors`` file to write). It must not be
  SRC or inside it, and no existing file in it is overwritten unless an earlier conversion wrote it
  (listed in ``DST/.headfit-converted.json``).

For a hub id, check-models prints the command with DST = `registry.converted_dir` (plus the model's
subfolder), where `registry.locate` looks before the hub cache: after the conversion the model is found
with no config change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from common import atomic
from common.errors import UserError
from guidance.models.ip_adapter import PARTS, flatten
from guidance.registry import PICKLE_SUFFIXES, safetensors_name
from guidance.weights import WeightFileError, unpickle_plain

MANIFEST = ".headfit-converted.json"
"""In DST: the files conversions wrote there (those a later conversion may overwrite)."""
SKIPPED_SUFFIXES = (".msgpack", ".h5")
"""Other frameworks' weights in a hub folder: not copied."""


class ConvertError(UserError):
    """SRC or DST cannot be used, or a pickle is not plain weights (one line, exit 2)."""


def convert_weights(src: Path, dst: Path) -> list[Path]:
    """Convert the pickle weights of ``src`` (a file or a folder) into safetensors under ``dst``, copying the
    rest (see the module docstring); the files written, in order. Raises `ConvertError` (a `UserError`)."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.exists():
        raise ConvertError(f"cannot convert {src}: no such file or folder")
    _check_places(src, dst)
    if src.is_file():
        if src.suffix.lower() not in PICKLE_SUFFIXES:
            raise ConvertError(f"cannot convert {src}: not a pickle weight file ({', '.join(PICKLE_SUFFIXES)})")
        if dst.suffix.lower() == ".safetensors":
            root, plan = dst.parent, [(src, Path(dst.name))]
        else:
            root, plan = dst, [(src, Path(safetensors_name(src.name)))]
    else:
        root, plan = dst, _folder_plan(src)
    if root.exists() and not root.is_dir():
        raise ConvertError(f"cannot convert into {root}: it is a file, not a folder")
    owned = _owned(root)
    for _, rel in plan:
        target = root / rel
        if target.resolve() == src.resolve():
            raise ConvertError(f"cannot convert {src} into itself: choose another DST")
        if (target.exists() or target.is_symlink()) and rel.as_posix() not in owned:
            raise ConvertError(f"cannot convert into {dst}: {target} exists and was not written by convert-weights "
                               "(choose another DST or remove it)")
    written: list[Path] = []
    for source, rel in plan:
        target = root / rel
        if source.suffix.lower() in PICKLE_SUFFIXES:
            _save_safetensors(tensors_of(read_pickle(source), source), target)
        elif source.name.endswith(".json") and ".bin.index" in source.name:
            _write_index(source, target)
        else:
            with atomic.atomic_path(target, guarded=False) as tmp:
                shutil.copyfile(source, tmp)
        owned.add(rel.as_posix())
        _write_json(root / MANIFEST, {"files": sorted(owned)})
        written.append(target)
    return written


def _check_places(src: Path, dst: Path) -> None:
    s, d = src.resolve(), dst.resolve()
    if d == s:
        raise ConvertError(f"cannot convert {src} into itself: choose another DST")
    if s in d.parents:
        raise ConvertError(f"cannot convert {src} into {dst}: DST must not be inside SRC")
    if src.is_file() and d.suffix.lower() != ".safetensors" and d.is_file():
        raise ConvertError(f"cannot convert into {dst}: it is a file; give a folder or a .safetensors file")


def _folder_plan(src: Path) -> list[tuple[Path, Path]]:
    """(source file, relative target) for every file of ``src`` that is converted or copied."""
    files = sorted(p for p in src.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts))
    names = {p.relative_to(src).as_posix() for p in files}
    plan: list[tuple[Path, Path]] = []
    for path in files:
        rel = path.relative_to(src)
        if path.suffix.lower() in SKIPPED_SUFFIXES:
            continue
        if path.suffix.lower() in PICKLE_SUFFIXES:
            converted = rel.with_name(safetensors_name(rel.name))
            if converted.as_posix() in names:  # SRC already has its safetensors twin: that one is copied
                continue
            plan.append((path, converted))
        elif path.name.endswith(".json") and ".bin.index" in path.name:
            plan.append((path, rel.with_name(_index_name(rel.name))))
        else:
            plan.append((path, rel))
    if not any(path.suffix.lower() in PICKLE_SUFFIXES for path, _ in plan):
        raise ConvertError(f"nothing to convert: {src} holds no pickle weights without a .safetensors twin")
    # conversions first, the files locate() probes for (model_index.json, config.json at the top) last: an
    # interrupted conversion is not mistaken for a complete one
    return sorted(plan, key=lambda item: (len(item[1].parts) == 1 and item[1].suffix == ".json",
                                          item[0].suffix.lower() not in PICKLE_SUFFIXES))


def _owned(root: Path) -> set[str]:
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    files = data.get("files") if isinstance(data, dict) else None
    return {str(name) for name in files} if isinstance(files, list) else set()


def read_pickle(path: Path) -> Any:
    """A pickle weight file's contents through `unpickle_plain` (nothing runs); one line when it is not plain."""
    try:
        return unpickle_plain(path)
    except WeightFileError as exc:
        raise ConvertError(f"refusing to convert {path}: not plain weights (a pickle that would run code or build "
                           f"objects is never loaded): {str(exc).split(': ', 1)[-1]}") from None


def tensors_of(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an unpickled weight file, flat: an IP-Adapter's two dicts as ``image_proj.<k>`` /
    ``ip_adapter.<k>`` (`ip_adapter.flatten`), a wrapped ``state_dict`` unwrapped, other nesting joined with dots;
    everything that is not a tensor (step counters, optimizer settings) dropped."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if isinstance(state, dict) and set(state) == set(PARTS) and all(isinstance(state[p], dict) for p in PARTS):
        flat = flatten({part: {str(k): v for k, v in state[part].items() if isinstance(v, torch.Tensor)} for part in PARTS})
    else:
        flat = {}
        _collect(state, "", flat)
    if not flat:
        raise ConvertError(f"cannot convert {path}: it holds no tensors (found {type(state).__name__})")
    return flat


def _collect(node: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(node, torch.Tensor):
        out[prefix] = node
    elif isinstance(node, dict):
        for key, value in node.items():
            _collect(value, f"{prefix}.{key}" if prefix else str(key), out)


def _save_safetensors(tensors: dict[str, torch.Tensor], target: Path) -> None:
    """Atomically, each tensor its own contiguous storage (safetensors refuses shared or strided storage)."""
    seen: set[int] = set()
    own: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage()
        whole = tensor.is_contiguous() and tensor.storage_offset() == 0 and storage.nbytes() == tensor.numel() * tensor.element_size()
        if not whole or storage.data_ptr() in seen:
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        seen.add(tensor.untyped_storage().data_ptr())
        own[name] = tensor
    with atomic.atomic_path(target, guarded=False) as tmp:
        save_file(own, str(tmp), metadata={"format": "pt"})  # transformers wants the "format" entry


def _index_name(name: str) -> str:
    """``pytorch_model.bin.index.json`` → ``model.safetensors.index.json`` (variants kept: ``.bin.index.fp16.json``)."""
    head, _, tail = name.partition(".bin.index")
    return safetensors_name(head + ".bin").removesuffix(".safetensors") + ".safetensors.index" + tail


def _write_index(source: Path, target: Path) -> None:
    index = json.loads(source.read_text())
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if isinstance(weight_map, dict):
        index["weight_map"] = {key: safetensors_name(str(file)) for key, file in weight_map.items()}
    _write_json(target, index)


def _write_json(path: Path, obj: Any) -> None:
    atomic.write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode(), guarded=False)
