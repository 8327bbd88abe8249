"""Read a StyleGAN/EG3D/PanoHead network pickle without running any of its code.

The official checkpoints are plain pickles written through `torch_utils.persistence`: every
network object is stored as ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the source
code of its Python module (``module_src``), its class name and its state (``__dict__``: the torch
module's ``_parameters``, ``_buffers``, ``_modules`` plus ``_init_args``/``_init_kwargs``). The
original loader ``exec``s that source. This unpickler never does: it resolves only an allow-list of
globals to inert stand-ins (`PersistentRecord`, `ObjectRecord`) or to data constructors (tensors,
storages through torch's own ``weights_only`` loader, numpy arrays and scalars, ``OrderedDict``).
Any other global (``os.system``, ``builtins.eval``, ``subprocess.*``, an unknown class ...) raises
`UnsafePickleError` before anything is called.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list (it could run code when loaded)."""


@dataclass
class PersistentRecord:
    """A `torch_utils.persistence` object, kept as data: its class name, its state and a hash of
    the module source it carried (the source itself is never executed)."""

    class_name: str
    state: dict
    source_sha256: str

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())


class ObjectRecord:
    """An ordinary (non-persistent) pickled object of an allow-listed class, e.g. a
    ``torch.nn.Sequential`` inside a persistent network: its qualified name and its state."""

    qualname = "object"

    def __init__(self, *args: Any) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"ObjectRecord({self.qualname})"


class EasyDictRecord(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict subclass): kept as a plain dict."""


def _record_class(module: str, name: str) -> type:
    return type(name, (ObjectRecord,), {"qualname": f"{module}.{name}"})


def _reconstruct_persistent(meta: dict) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("persistent object with an unexpected meta layout")
    source = meta.get("module_src") or ""
    state = meta.get("state")
    if isinstance(state, ObjectRecord):
        state = state.state
    digest = hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()
    return PersistentRecord(meta["class_name"], dict(state or {}), digest)


def _storage_from_bytes(data: bytes) -> Any:
    """A tensor storage pickled with ``torch.save`` (legacy format): read with torch's restricted loader."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _reconstruct_object(cls: type, base: Any = None, state: Any = None) -> ObjectRecord:
    """``copyreg._reconstructor`` restricted to our stand-in classes."""
    if not (isinstance(cls, type) and issubclass(cls, ObjectRecord)):
        raise UnsafePickleError(f"copyreg._reconstructor of {cls!r} is not allowed")
    return cls()


def _newobj(cls: type, *args: Any) -> Any:
    if isinstance(cls, type) and issubclass(cls, (ObjectRecord, EasyDictRecord, collections.OrderedDict)):
        return cls.__new__(cls)
    raise UnsafePickleError(f"copyreg.__newobj__ of {cls!r} is not allowed")


_SAFE_TORCH_MODULES = ("torch.nn.modules.",)
_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("dnnlib", "EasyDict"): EasyDictRecord,
    ("copyreg", "_reconstructor"): _reconstruct_object,
    ("copyreg", "__newobj__"): _newobj,
    ("builtins", "object"): object,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
}


_NUMPY_GLOBALS = {
    "numpy.core.multiarray": ("_reconstruct", "scalar"),
    "numpy._core.multiarray": ("_reconstruct", "scalar"),
    "numpy": ("ndarray", "dtype", "float32", "float64", "int32", "int64", "bool_"),
}


def _numpy_global(module: str, name: str) -> Any:
    """Array/scalar/dtype constructors only (they build data, they run nothing)."""
    if name not in _NUMPY_GLOBALS.get(module, ()):
        return None
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only hands out allow-listed, inert globals."""

    def find_class(self, module: str, name: str) -> Any:
        found = _DATA_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module.startswith("numpy"):
            value = _numpy_global(module, name)
            if value is not None:
                return value
        if module.startswith(_SAFE_TORCH_MODULES) and name[:1].isupper():
            return _record_class(module, name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: this checkpoint reader only accepts network "
            "pickles made of tensors, plain data and torch_utils.persistence objects (nothing was executed)"
        )


def load_restricted(source: str | Path | bytes | BinaryIO) -> Any:
    """Unpickle `source` (path, bytes or binary file) with `RestrictedUnpickler`."""
    if isinstance(source, (bytes, bytearray)):
        return RestrictedUnpickler(io.BytesIO(source)).load()
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            return RestrictedUnpickler(handle).load()
    return RestrictedUnpickler(source).load()


@dataclass
class NetworkWeights:
    """One network taken out of a pickle.

    Attributes:
        class_name: the persistent class name (e.g. ``TriPlaneGenerator``).
        init_kwargs: the constructor's keyword arguments (hyper-parameters), plain dicts/values.
        state: flat ``{dotted.name: tensor}`` of every parameter and buffer, torch's naming.
    """

    class_name: str
    init_kwargs: dict
    state: dict[str, torch.Tensor] = field(default_factory=dict)


def _children(obj: Any) -> dict:
    state = obj.state if isinstance(obj, (PersistentRecord, ObjectRecord)) else None
    return state if isinstance(state, dict) else {}


def flatten_state(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every parameter and buffer under a record, named as ``torch.nn.Module.state_dict`` would."""
    state = _children(obj)
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + name] = value.detach().clone()
    for name, child in (state.get("_modules") or {}).items():
        if child is not None:
            out.update(flatten_state(child, f"{prefix}{name}."))
    return out


def plain(value: Any) -> Any:
    """Hyper-parameters as JSON-friendly plain data (EasyDicts to dicts, numpy scalars to numbers)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, torch.Tensor) and getattr(value, "shape", None) == ():
        return value.item()
    return value


def extract_network(data: Any, name: str = "G_ema") -> NetworkWeights:
    """The network ``name`` of an unpickled checkpoint dict (or the record itself) as tensors + kwargs."""
    record = data.get(name) if isinstance(data, dict) else data
    if not isinstance(record, PersistentRecord):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"checkpoint has no persistent network {name!r} (found {keys})")
    return NetworkWeights(record.class_name, plain(record.init_kwargs), flatten_state(record))
