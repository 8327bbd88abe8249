"""Read a StyleGAN/EG3D/PanoHead network pickle without running any of its code.

The official checkpoints are plain pickles written through `torch_utils.persistence`: every
network object is stored as ``_reconstruct_persistent_obj(meta)`` where ``meta`` holds the source
code of its Python module (``module_src``), its class name and its state (``__dict__``: the torch
module's ``_parameters``, ``_buffers``, ``_modules`` plus ``_init_args``/``_init_kwargs``). The
original loader ``exec``s that source. This reader never does: the pickle runs on `pickle_vm.Machine`
under `NetworkPolicy`, which resolves only an allow-list of globals to inert stand-ins
(`PersistentRecord`, `ObjectRecord`) or to data constructors (tensors and their storages, numpy
arrays and scalars, ``OrderedDict``). Any other global (``os.system``, ``builtins.eval``,
``subprocess.*``, an unknown class ...) raises `UnsafePickleError` before anything is called.
Tensor storages (``torch.storage._load_from_bytes``: a legacy ``torch.save`` blob) are decoded here
too, on the same machine, so no other unpickler ever sees the file.

Work is bounded (`pickle_vm.PickleLimits`): the machine counts instructions, memo entries, nesting,
container items and the tensor bytes it materialises, and the walks over the result
(`flatten_state`, `plain`) refuse cycles and stop at a depth and a count, so a small file of shared
references cannot make a conversion run for ever or fill the memory.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional

import numpy as np
import torch

from guidance.panohead.errors import CheckpointError, PickleLimitError, UnsafePickleError
from guidance.panohead.pickle_vm import LIMITS, Budget, Machine, PickleLimits, over_limit

__all__ = ["CheckpointError", "NetworkWeights", "ObjectRecord", "PersistentRecord", "PickleLimitError", "PickleLimits",
           "UnsafePickleError", "extract_network", "flatten_state", "load_restricted", "plain"]


@dataclass
class PersistentRecord:
    """A `torch_utils.persistence` object, kept as data: its class name, its state and a hash of
    the module source it carried (the source itself is never executed)."""

    class_name: str
    state: dict
    source_sha256: str

    @property
    def init_kwargs(self) -> dict:
        kwargs = self.state.get("_init_kwargs")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise CheckpointError(f"{self.class_name}'s hyper-parameters (_init_kwargs) are a {type(kwargs).__name__}, not a dict")
        return dict(kwargs or {})

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


@dataclass(frozen=True)
class _Callable:
    """An allow-listed function: only `NetworkPolicy.call` invokes it."""

    qualname: str
    function: Callable[..., Any]


@dataclass(frozen=True)
class _StorageType:
    """``torch.FloatStorage`` and friends, as the dtype they stand for."""

    dtype: torch.dtype


@dataclass
class _Storage:
    """A decoded tensor storage: its elements as a flat tensor."""

    flat: torch.Tensor


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_SAFE_TORCH_MODULES = ("torch.nn.modules.",)
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_VALUES = {"ndarray": np.ndarray, "float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64, "bool_": np.bool_}
_MAX_DIMS = 64
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _refused(what: str) -> UnsafePickleError:
    return UnsafePickleError(f"refusing to load {what}: this checkpoint reader only accepts network pickles made of "
                             "tensors, plain data and torch_utils.persistence objects (nothing was executed)")


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)) or len(values) > _MAX_DIMS or not all(type(v) is int and v >= 0 for v in values):
        raise CheckpointError(f"malformed pickle: {what} must be at most {_MAX_DIMS} non-negative integers")
    return tuple(values)


class NetworkPolicy:
    """The allow-list of a network pickle (see the module docstring), bound to one read's budget."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.functions = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("dnnlib.util", "EasyDict"): EasyDictRecord,
            ("dnnlib", "EasyDict"): EasyDictRecord,
            ("builtins", "object"): object,
            ("torch._utils", "_rebuild_tensor_v2"): _Callable("torch._utils._rebuild_tensor_v2", _rebuild_tensor),
            ("torch._utils", "_rebuild_parameter"): _Callable("torch._utils._rebuild_parameter", _rebuild_parameter),
            ("torch.storage", "_load_from_bytes"): _Callable("torch.storage._load_from_bytes", self._storage_from_bytes),
            ("torch", "Size"): _Callable("torch.Size", lambda dims=(): torch.Size(_ints(dims, "a torch.Size"))),
            ("torch_utils.persistence", "_reconstruct_persistent_obj"): _Callable("_reconstruct_persistent_obj", _reconstruct_persistent),
            ("copyreg", "_reconstructor"): _Callable("copyreg._reconstructor", self._reconstructor),
            ("copyreg", "__newobj__"): _Callable("copyreg.__newobj__", lambda cls, *args: self.new(cls, args, {})),
            ("builtins", "set"): _Callable("builtins.set", lambda items=(): set(self._members(items))),
            ("builtins", "frozenset"): _Callable("builtins.frozenset", lambda items=(): frozenset(self._members(items))),
            ("builtins", "slice"): _Callable("builtins.slice", slice),
            ("_codecs", "encode"): _Callable("_codecs.encode", self._latin1),
            ("numpy", "dtype"): _Callable("numpy.dtype", _numpy_dtype),
        }
        self.record_classes: dict[tuple[str, str], type] = {}

    # --- the Policy protocol of pickle_vm.Machine ---------------------------------------------
    def find_global(self, module: str, name: str) -> Any:
        module = _PYTHON2_MODULES.get(module, module)  # protocol 2 writes Python 2 names
        found = self.functions.get((module, name))
        if found is not None:
            return found
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if module == "numpy" and name in _NUMPY_VALUES:
            return _NUMPY_VALUES[name]
        if module in _NUMPY_MODULES and name in _NUMPY_FUNCTIONS:
            return _NUMPY_FUNCTIONS[name]
        if module.startswith(_SAFE_TORCH_MODULES) and name[:1].isupper() and len(module) + len(name) < 200:
            if (module, name) not in self.record_classes:
                self.record_classes[(module, name)] = _record_class(module, name)
            return self.record_classes[(module, name)]
        raise _refused(f"global {module[:100]}.{name[:100]}")

    def call(self, func: Any, args: tuple) -> Any:
        if isinstance(func, _Callable):
            return func.function(*args)
        if func is collections.OrderedDict or func is EasyDictRecord or (isinstance(func, type) and issubclass(func, ObjectRecord)):
            return self.new(func, args, {})
        raise _refused(f"a call of {func!r:.80}")

    def new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        if cls is collections.OrderedDict or cls is EasyDictRecord:
            if args or kwargs:
                raise _refused(f"{cls.__name__} built from arguments")
            return cls()
        if isinstance(cls, type) and issubclass(cls, ObjectRecord):
            return cls()
        raise _refused(f"creating an object of {cls!r:.80}")

    def build(self, obj: Any, state: Any) -> None:
        if isinstance(obj, ObjectRecord):
            obj.__setstate__(state)
        elif isinstance(obj, np.ndarray):
            self.budget.add_data(_check_array_state(state))
            obj.__setstate__(state)
        elif isinstance(obj, np.dtype):
            _check_dtype_state(state)
            obj.__setstate__(state)  # type: ignore[attr-defined]  # exists at runtime; numpy's stubs omit it
        else:
            raise _refused(f"setting the state of a {type(obj).__name__}")

    # --- allow-listed constructors that need the budget ---------------------------------------
    def _members(self, items: Any) -> list:
        if not isinstance(items, (list, tuple, set, frozenset)):
            raise CheckpointError("malformed pickle: a set built from something other than a list")
        self.budget.add_elements(len(items))
        for item in items:
            self.budget.check_key(item)
        return list(items)

    def _reconstructor(self, cls: Any, base: Any, state: Any = None) -> ObjectRecord:
        if not (isinstance(cls, type) and issubclass(cls, ObjectRecord)) or base is not object or state is not None:
            raise _refused(f"copyreg._reconstructor of {cls!r:.80}")
        return cls()

    def _latin1(self, text: Any, encoding: Any = "utf-8") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise _refused("_codecs.encode other than of latin-1 text")
        self.budget.add_data(len(text))
        return text.encode("latin-1")

    def _storage_from_bytes(self, data: Any) -> _Storage:
        """A storage saved by the legacy ``torch.save`` (magic, protocol, system info, a persistent-id
        pickle, the storage keys, then a little-endian element count and the raw elements)."""
        if not isinstance(data, (bytes, bytearray)):
            raise CheckpointError("malformed pickle: a tensor storage that is not bytes")
        stream = io.BytesIO(data)
        magic, protocol, info = (self._embedded(stream, len(data)) for _ in range(3))
        if magic != _LEGACY_MAGIC or protocol != _LEGACY_PROTOCOL or not isinstance(info, dict) or info.get("little_endian") is not True:
            raise CheckpointError("malformed tensor storage (not a little-endian legacy torch.save blob)")
        ids: list[tuple] = []

        def persistent_load(pid: tuple) -> int:
            ids.append(pid)
            return len(ids)

        self._embedded(stream, len(data), persistent_load)
        keys = self._embedded(stream, len(data))
        dtype, numel = _storage_header(ids, keys)
        count = int.from_bytes(stream.read(8), "little")
        nbytes = numel * torch.empty(0, dtype=dtype).element_size()
        raw = stream.read(nbytes)
        if count != numel or len(raw) != nbytes:
            raise CheckpointError(f"malformed tensor storage: {numel} elements declared, {count} stored, {len(raw)} bytes present")
        self.budget.add_data(len(raw))
        return _Storage(torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype))

    def _embedded(self, stream: io.BytesIO, size: int, persistent_load: Optional[Callable[[Any], Any]] = None) -> Any:
        return Machine(stream, size - stream.tell(), _StoragePolicy(), self.budget, persistent_load).load()


class _StoragePolicy:
    """Inside a storage blob: plain data and the storage type names only."""

    def find_global(self, module: str, name: str) -> Any:
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise _refused(f"global {module}.{name} inside a tensor storage")

    def call(self, func: Any, args: tuple) -> Any:
        raise _refused("a call inside a tensor storage")

    def new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        raise _refused("an object inside a tensor storage")

    def build(self, obj: Any, state: Any) -> None:
        raise _refused("object state inside a tensor storage")


def _storage_header(ids: list[tuple], keys: Any) -> tuple[torch.dtype, int]:
    if len(ids) != 1 or not isinstance(ids[0], tuple) or len(ids[0]) not in (5, 6):
        raise CheckpointError("malformed tensor storage: expected exactly one storage record")
    kind, storage_type, key, _location, numel, *view = ids[0]
    if kind != "storage" or not isinstance(storage_type, _StorageType) or type(key) is not str or type(numel) is not int or numel < 0:
        raise CheckpointError("malformed tensor storage record")
    if keys != [key] or any(item is not None for item in view):  # compared only once key is known to be text
        raise CheckpointError("malformed tensor storage record")
    return storage_type.dtype, numel


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False, hooks: Any = None,
                    metadata: Any = None) -> torch.Tensor:
    """``torch._utils._rebuild_tensor_v2``: a view of a decoded storage, checked to stay inside it."""
    if not isinstance(storage, _Storage) or type(offset) is not int or offset < 0:
        raise CheckpointError("malformed pickle: a tensor without a storage and offset")
    size, stride = _ints(size, "a tensor size"), _ints(stride, "a tensor stride")
    if len(size) != len(stride):
        raise CheckpointError("malformed pickle: a tensor's size and stride differ in length")
    extent = 0 if 0 in size else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if extent > storage.flat.numel():
        raise CheckpointError(f"malformed pickle: a tensor of size {list(size)} reaches past its storage of {storage.flat.numel()} elements")
    return storage.flat.as_strided(size, stride, offset)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise CheckpointError("malformed pickle: a parameter without a tensor")
    return data


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str) or len(spec) > 16:
        raise _refused("a numpy dtype that is not a simple type code")
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject or dtype.names is not None:
        raise _refused(f"numpy dtype {spec!r} (objects or fields)")
    return dtype


def _check_dtype_state(state: Any) -> None:
    if not isinstance(state, tuple) or len(state) < 5 or any(item is not None for item in state[2:5]):
        raise _refused("a numpy dtype state with sub-arrays or fields")


def _check_array_state(state: Any) -> int:
    """The array's data size, after checking the state is (version, shape, simple dtype, order, bytes)."""
    if not isinstance(state, tuple) or len(state) != 5:
        raise CheckpointError("malformed pickle: unexpected numpy array state")
    _, shape, dtype, _, data = state
    _ints(shape, "a numpy array shape")
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise _refused("a numpy array of objects")
    return len(data)


def _numpy_reconstruct(cls: Any, shape: Any, code: Any) -> np.ndarray:
    if cls is not np.ndarray or _ints(shape, "a numpy array shape") != (0,) or not isinstance(code, bytes):
        raise _refused("numpy _reconstruct other than of an empty ndarray")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _refused("a numpy scalar that is not plain bytes of a simple dtype")
    return np.frombuffer(data, dtype=dtype)[0]


_NUMPY_FUNCTIONS = {"_reconstruct": _Callable("numpy._reconstruct", _numpy_reconstruct), "scalar": _Callable("numpy.scalar", _numpy_scalar)}


def _reconstruct_persistent(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise UnsafePickleError("persistent object with an unexpected meta layout")
    source = meta.get("module_src") or ""
    state = meta.get("state")
    if isinstance(state, ObjectRecord):
        state = state.state
    if not isinstance(source, str) or not isinstance(state, (dict, type(None))):
        raise CheckpointError(f"persistent object {meta['class_name'][:80]!r} has a malformed source or state")
    digest = hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()
    return PersistentRecord(meta["class_name"][:200], dict(state or {}), digest)


# --- reading -------------------------------------------------------------------------------------
PICKLE_PROTOCOLS = range(2, 6)


@contextlib.contextmanager
def _opened(source: str | Path | bytes | BinaryIO) -> Iterator[tuple[BinaryIO, int, str]]:
    """(stream, size in bytes, name) of a path, bytes or binary file."""
    if isinstance(source, (bytes, bytearray)):
        yield io.BytesIO(source), len(source), "the checkpoint"
    elif isinstance(source, (str, Path)):
        try:
            handle = open(source, "rb")
        except OSError as exc:
            raise CheckpointError(f"cannot read {source}: {exc.strerror or exc}") from None
        with handle:
            yield handle, os.fstat(handle.fileno()).st_size, str(source)
    else:
        start = source.tell()
        size = source.seek(0, io.SEEK_END) - start
        source.seek(start)
        yield source, size, "the checkpoint"


def load_restricted(source: str | Path | bytes | BinaryIO, limits: PickleLimits = LIMITS) -> Any:
    """Unpickle `source` (path, bytes or binary file) under `NetworkPolicy` within `limits`."""
    with _opened(source) as (stream, size, name):
        _check_header(stream, size, name, limits)
        budget = Budget(limits, 2 * size + (1 << 20))  # protocol 2 stores each blob twice: as text, then decoded
        try:
            return Machine(stream, size, NetworkPolicy(budget), budget).load()
        except CheckpointError:
            raise
        except OSError as exc:
            raise CheckpointError(f"cannot read {name}: {exc.strerror or exc}") from None
        except Exception as exc:  # whatever the bytes made a constructor raise: the file is at fault
            detail = " ".join(str(exc).split())[:160] or type(exc).__name__
            raise CheckpointError(f"{name} is not a readable network pickle (corrupt or truncated: {detail})") from None


def _check_header(stream: BinaryIO, size: int, name: str, limits: PickleLimits) -> None:
    if size == 0:
        raise CheckpointError(f"{name} is empty")
    if size > limits.max_file_bytes:
        raise over_limit("bytes of pickle file", limits.max_file_bytes, "max_file_bytes")
    start = stream.tell()
    head = stream.read(2)
    stream.seek(start)
    if len(head) < 2 or head[0] != 0x80 or head[1] not in PICKLE_PROTOCOLS:
        raise CheckpointError(f"{name} is not a network pickle (it starts with {head!r}, a pickle of protocol 2 to 5 starts with b'\\x80\\x02' to b'\\x80\\x05')")


# --- walking the result --------------------------------------------------------------------------
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


def _group(state: dict, name: str, where: str) -> dict:
    group = state.get(name)
    if group is None:
        return {}
    if not isinstance(group, dict):
        raise CheckpointError(f"module {where or '(top)'} has a {name} that is a {type(group).__name__}, not a dict")
    return group


class _StateWalk:
    """Collects parameters and buffers under a record: no cycles, bounded depth, count and bytes."""

    def __init__(self, limits: PickleLimits, max_bytes: int):
        self.limits, self.max_bytes = limits, max_bytes
        self.out: dict[str, torch.Tensor] = {}
        self.on_path: set[int] = set()
        self.modules = self.bytes = 0

    def visit(self, obj: Any, prefix: str, depth: int) -> None:
        if id(obj) in self.on_path:
            raise CheckpointError(f"module {prefix.rstrip('.') or '(top)'} contains itself (a cyclic module tree)")
        if depth > self.limits.max_depth:
            raise over_limit("levels of nested modules", self.limits.max_depth, "max_depth")
        self.modules += 1
        if self.modules > self.limits.max_modules:
            raise over_limit("module visits (shared submodules repeat)", self.limits.max_modules, "max_modules")
        state = _children(obj)
        self.on_path.add(id(obj))
        for group in ("_parameters", "_buffers"):
            for name, value in _group(state, group, prefix).items():
                if isinstance(value, torch.Tensor):
                    self.add(prefix + str(name), value)
        for name, child in _group(state, "_modules", prefix).items():
            if child is not None:
                self.visit(child, f"{prefix}{name}.", depth + 1)
        self.on_path.discard(id(obj))

    def add(self, name: str, tensor: torch.Tensor) -> None:
        self.bytes += tensor.numel() * tensor.element_size()
        if self.bytes > self.max_bytes:
            raise PickleLimitError(f"the checkpoint's tensors add up to more than {self.max_bytes:,} bytes, "
                                   "more than the file holds (tensors are shared or expanded)")
        if len(self.out) >= self.limits.max_tensors:
            raise over_limit("parameters and buffers in one network", self.limits.max_tensors, "max_tensors")
        self.out[name] = tensor.detach().clone()


def flatten_state(obj: Any, prefix: str = "", limits: PickleLimits = LIMITS, max_bytes: Optional[int] = None) -> dict[str, torch.Tensor]:
    """Every parameter and buffer under a record, named as ``torch.nn.Module.state_dict`` would."""
    walk = _StateWalk(limits, limits.max_file_bytes if max_bytes is None else max_bytes)
    walk.visit(obj, prefix, 0)
    return walk.out


_PLAIN_ATOMS = (str, int, float, bool, type(None))


class _PlainWalk:
    """Hyper-parameters to JSON-friendly data: no cycles, bounded depth and size."""

    def __init__(self, limits: PickleLimits):
        self.limits, self.items = limits, 0
        self.on_path: set[int] = set()

    def convert(self, value: Any, where: str, depth: int) -> Any:
        self.items += 1
        if self.items > self.limits.max_kwargs_items:
            raise over_limit("hyper-parameter values (shared lists repeat)", self.limits.max_kwargs_items, "max_kwargs_items")
        if isinstance(value, _PLAIN_ATOMS):
            return value
        if isinstance(value, (np.generic, np.ndarray, torch.Tensor)) and value.ndim == 0 and value.dtype != object:
            return value.item()
        if not isinstance(value, (dict, list, tuple)):
            raise CheckpointError(f"hyper-parameter {where} is a {type(value).__name__}, not plain data")
        if id(value) in self.on_path:
            raise CheckpointError(f"hyper-parameter {where} contains itself")
        if depth >= self.limits.max_depth:
            raise over_limit("levels of nested hyper-parameters", self.limits.max_depth, "max_depth")
        self.on_path.add(id(value))
        if isinstance(value, dict):
            out: Any = {str(k): self.convert(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
        else:
            out = [self.convert(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        self.on_path.discard(id(value))
        return out


def plain(value: Any, limits: PickleLimits = LIMITS) -> Any:
    """Hyper-parameters as JSON-friendly plain data (EasyDicts to dicts, numpy scalars to numbers)."""
    return _PlainWalk(limits).convert(value, "init_kwargs", 0)


def extract_network(data: Any, name: str = "G_ema", limits: PickleLimits = LIMITS, max_tensor_bytes: Optional[int] = None) -> NetworkWeights:
    """The network ``name`` of an unpickled checkpoint dict (or the record itself) as tensors + kwargs."""
    record = data.get(name) if isinstance(data, dict) else data
    if not isinstance(record, PersistentRecord):
        found = sorted(str(key)[:40] for key in list(data)[:20]) if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"checkpoint has no persistent network {name!r} (found {found})")
    return NetworkWeights(record.class_name, plain(record.init_kwargs, limits), flatten_state(record, "", limits, max_tensor_bytes))
