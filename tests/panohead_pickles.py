"""Network pickles for the checkpoint tests: the official layout (written the way
`torch_utils.persistence` writes it, with stand-in modules) and hostile variants of it.

Every builder returns the pickle's bytes. The hostile ones that a Python object cannot express
without hanging the builder itself (a dict keyed by a tuple of tuples ...) are assembled from
opcodes (`Ops`).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from typing import Iterator

import torch
from torch import nn

from guidance.panohead.tiny import TINY_KWARGS, tiny_generator


class EasyDict(dict):
    """Plays dnnlib.util.EasyDict when pickling."""


def _never_called(meta):  # the persistence loader: must never run when we read the pickle
    raise AssertionError("the restricted unpickler called the persistence reconstruct function")


class Persistent:
    """Pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, as the library does."""

    def __init__(self, class_name: str, state: dict, module_src: str = "import os\nos.system('echo pwned')\n"):
        self.meta = dict(type="class", version=4, module_src=module_src, class_name=class_name, state=state)

    def __reduce__(self):
        return (_never_called, (self.meta,))


@contextlib.contextmanager
def fake_modules() -> Iterator[None]:
    """Make `pickle` write the library's global names for our stand-ins (sys.modules restored after)."""
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _never_called
    _never_called.__module__, _never_called.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = EasyDict
    EasyDict.__module__ = "dnnlib.util"
    names = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    saved = {name: sys.modules.get(name) for name in names}
    sys.modules.update(names)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def dumps(data, protocol: int = 4) -> bytes:
    with fake_modules():
        return pickle.dumps(data, protocol=protocol)


def as_persistent(module: nn.Module, extra_buffers: bool = True):
    """The module tree as persistence records; Sequential/Softplus stay ordinary torch objects."""
    children = OrderedDict((name, as_persistent(child, extra_buffers)) for name, child in module._modules.items())
    if isinstance(module, (nn.Sequential, nn.Softplus)):
        copy = type(module)()
        copy.__dict__["_modules"] = children
        return copy
    buffers = OrderedDict(module._buffers)
    if extra_buffers and hasattr(module, "affine"):
        buffers["resample_filter"] = torch.ones(4, 4) / 16  # the official layers carry their FIR filter
    state = {"_parameters": OrderedDict(module._parameters), "_buffers": buffers, "_modules": children,
             "_init_args": (), "_init_kwargs": EasyDict(), "training": False}
    return Persistent(type(module).__name__, state)


def tiny_kwargs() -> EasyDict:
    return EasyDict(TINY_KWARGS, rendering_kwargs=EasyDict(TINY_KWARGS["rendering_kwargs"]))


def generator_record(generator: nn.Module) -> Persistent:
    top = as_persistent(generator)
    top.meta["class_name"] = "TriPlaneGenerator"
    top.meta["state"]["_init_kwargs"] = tiny_kwargs()
    t_mapping = Persistent("MappingNetwork", {"_parameters": OrderedDict(w=nn.Parameter(torch.zeros(3, 16))), "_buffers": OrderedDict(), "_modules": OrderedDict()})
    top.meta["state"]["_modules"]["t_mapping"] = t_mapping
    return top


def snapshot(g_ema) -> dict:
    """A network-snapshot-style dict {'G', 'D', 'G_ema', ...} around a G_ema record."""
    return {"G": g_ema, "D": Persistent("MaskDualDiscriminatorV2", {}), "G_ema": g_ema, "augment_pipe": None,
            "training_set_kwargs": EasyDict(resolution=64)}


def persistence_pickle(generator: nn.Module | None = None, protocol: int = 4) -> bytes:
    """The official layout around `generator` (the tiny random one by default)."""
    return dumps(snapshot(generator_record(generator if generator is not None else tiny_generator())), protocol)


def empty_module(**modules) -> Persistent:
    return Persistent("Module", {"_parameters": OrderedDict(), "_buffers": OrderedDict(), "_modules": OrderedDict(modules)})


def g_ema(kwargs=None, **modules) -> Persistent:
    record = empty_module(**modules)
    record.meta["class_name"] = "TriPlaneGenerator"
    record.meta["state"]["_init_kwargs"] = tiny_kwargs() if kwargs is None else kwargs
    return record


# --- hostile pickles -----------------------------------------------------------------------------
class SystemCall:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvalCall:
    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return (builtins.eval, (self.code,))


def system_call(marker) -> bytes:
    return dumps({"G_ema": SystemCall(f"touch {marker}")})


def eval_call(marker) -> bytes:
    return dumps({"G_ema": EvalCall(f"open({str(marker)!r}, 'w').close()")})


def code_inside_state(marker) -> bytes:
    return dumps({"G_ema": Persistent("TriPlaneGenerator", {"_parameters": {"w": SystemCall(f"touch {marker}")}})}, protocol=2)


def self_referential_list() -> bytes:
    loop: list = []
    loop.append(loop)
    return dumps({"G_ema": loop})


def cyclic_modules() -> bytes:
    """A submodule (an ordinary torch object inside the persistent network) that contains itself."""
    loop = nn.Sequential()
    loop._modules["again"] = loop
    return dumps(snapshot(g_ema(loop=loop)))


def cyclic_kwargs() -> bytes:
    kwargs = tiny_kwargs()
    kwargs["mapping_kwargs"] = {"inner": kwargs}
    return dumps(snapshot(g_ema(kwargs)))


def laughs_in_kwargs(levels: int = 40, fan: int = 10) -> bytes:
    """Hyper-parameters of lists of lists, each level `fan` references to the one below: tiny on
    disk, `fan ** levels` values when walked."""
    level: list = ["lol"]
    for _ in range(levels):
        level = [level] * fan
    kwargs = tiny_kwargs()
    kwargs["rendering_kwargs"]["laughs"] = level
    return dumps(snapshot(g_ema(kwargs)))


def laughs_in_modules(levels: int = 40, fan: int = 4) -> bytes:
    """Submodules shared `fan` times per level: `fan ** levels` module visits when flattened."""
    module = empty_module()
    for _ in range(levels):
        module = empty_module(**{f"m{i}": module for i in range(fan)})
    return dumps(snapshot(g_ema(shared=module)))


def expanded_tensor() -> bytes:
    """A 4-byte storage viewed as 100000 x 100000 (stride 0): 40 GB if it were copied."""
    record = g_ema()
    record.meta["state"]["_parameters"]["huge"] = torch.zeros(1).expand(100_000, 100_000)
    return dumps(snapshot(record))


class Ops:
    """A pickle assembled opcode by opcode (protocol 4)."""

    def __init__(self) -> None:
        self.data = bytearray(pickle.PROTO + b"\x04")
        self.memo = 0

    def raw(self, *chunks: bytes) -> "Ops":
        for chunk in chunks:
            self.data += chunk
        return self

    def text(self, value: str) -> "Ops":
        encoded = value.encode()
        return self.raw(pickle.BINUNICODE, struct.pack("<I", len(encoded)), encoded)

    def blob(self, value: bytes) -> "Ops":
        return self.raw(pickle.BINBYTES, struct.pack("<I", len(value)), value)

    def memoize(self) -> int:
        self.raw(pickle.MEMOIZE)
        self.memo += 1
        return self.memo - 1

    def get(self, index: int) -> "Ops":
        return self.raw(pickle.LONG_BINGET, struct.pack("<I", index))

    def global_(self, module: str, name: str) -> "Ops":
        return self.text(module).text(name).raw(pickle.STACK_GLOBAL)

    def bytes(self) -> bytes:
        return bytes(self.data + pickle.STOP)


def hash_bomb(levels: int = 100) -> bytes:
    """{T: 1} where T = (T', T'), T' = (T'', T'') ...: hashing T visits 2 ** levels tuples."""
    ops = Ops().raw(pickle.EMPTY_DICT).text("laugh")
    previous = ops.memoize()
    for _ in range(levels):
        ops.raw(pickle.POP).get(previous).get(previous).raw(pickle.TUPLE2)
        previous = ops.memoize()
    return ops.raw(pickle.BININT1, b"\x01", pickle.SETITEM).bytes()


def set_bomb(levels: int = 100) -> bytes:
    """The same tuple as a set member."""
    ops = Ops().raw(pickle.EMPTY_SET).text("laugh")
    previous = ops.memoize()
    for _ in range(levels):
        ops.raw(pickle.POP).get(previous).get(previous).raw(pickle.TUPLE2)
        previous = ops.memoize()
    return ops.raw(pickle.POP, pickle.MARK).get(previous).raw(pickle.ADDITEMS).bytes()


def memo_bomb() -> bytes:
    """A memo write at index 2**31 (a C unpickler grows its memo table to match)."""
    return Ops().raw(pickle.NONE, pickle.LONG_BINPUT, struct.pack("<I", 2 ** 31)).bytes()


def blob_reuse(blob_bytes: int = 1 << 20, copies: int = 64) -> bytes:
    """One tensor storage blob in the file, decoded `copies` times through the memo."""
    buffer = io.BytesIO()
    torch.save(torch.zeros(blob_bytes // 4)._typed_storage(), buffer, _use_new_zipfile_serialization=False)
    legacy = buffer.getvalue()  # what torch.storage._load_from_bytes decodes
    ops = Ops().raw(pickle.EMPTY_LIST, pickle.MARK).global_("torch.storage", "_load_from_bytes")
    loader = ops.memoize()
    ops.blob(legacy)
    blob = ops.memoize()
    ops.raw(pickle.TUPLE1, pickle.REDUCE)
    for _ in range(copies - 1):
        ops.get(loader).get(blob).raw(pickle.TUPLE1, pickle.REDUCE)
    return ops.raw(pickle.APPENDS).bytes()


def deep_marks(depth: int = 5000) -> bytes:
    return Ops().raw(pickle.MARK * depth).bytes()


def long_run(count: int) -> bytes:
    """`count` instructions that build nothing lasting (None pushed and popped)."""
    return Ops().raw((pickle.NONE + pickle.POP) * count, pickle.NONE).bytes()
