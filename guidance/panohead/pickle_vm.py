"""A pickle machine with a work budget, for files nobody vouches for.

`pickle.Unpickler` cannot be told to stop: a small file built from shared references ("billion
laughs") can make it hash a tuple of tuples of tuples ... for ever, reserve a memo of billions of
slots, or copy one large blob thousands of times. This machine executes the same opcodes (parsed by
`pickletools.genops`) in Python, hands every global, call, object creation and BUILD to a policy
(see `unpickle.NetworkPolicy`), and counts its work against `PickleLimits`. Any step past a limit
raises `PickleLimitError` naming the limit, before the work is done.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Callable, Optional, Protocol, cast

from guidance.panohead.errors import CheckpointError, PickleLimitError, UnsafePickleError


@dataclass(frozen=True)
class PickleLimits:
    """Ceilings on reading a network pickle. The official PanoHead checkpoint (~0.5-1.5 GB; three
    networks of a few thousand tensors, modules nested about ten deep) stays far below each."""

    max_file_bytes: int = 8 << 30
    """Size of the pickle file."""
    max_opcodes: int = 20_000_000
    """Pickle instructions executed (each creates at most one object)."""
    max_memo: int = 5_000_000
    """Memo entries, and the highest memo index."""
    max_nesting: int = 1_000
    """Containers under construction at once (open MARKs)."""
    max_elements: int = 20_000_000
    """Items put into lists, tuples, dicts and sets, in all."""
    max_key_items: int = 64
    """Atoms in one dict key or set member (hashing a tuple visits every item, shared or not)."""
    max_int_bytes: int = 1024
    """Size of one integer."""
    max_line_bytes: int = 1 << 20
    """Length of one text argument (protocol-0 opcodes)."""
    max_depth: int = 64
    """Nesting of modules, and of hyper-parameter containers, walked after unpickling."""
    max_modules: int = 100_000
    """Module records visited while collecting a network's tensors."""
    max_tensors: int = 100_000
    """Parameters and buffers of one network."""
    max_kwargs_items: int = 100_000
    """Values in one network's hyper-parameters."""


LIMITS = PickleLimits()
HINT = "(a limit of guidance/panohead/pickle_vm.py PickleLimits; the official checkpoint stays far below it)"


def over_limit(what: str, limit: int, name: str) -> PickleLimitError:
    return PickleLimitError(f"the checkpoint needs more than {limit:,} {what} ({name}) {HINT}")


class Budget:
    """What one checkpoint read has spent so far (shared by the pickles embedded in it)."""

    def __init__(self, limits: PickleLimits, data_bytes: int):
        self.limits = limits
        self.data_limit = data_bytes
        """Bytes of tensor/array data that may be materialised: no more than the file holds."""
        self.opcodes = self.elements = self.data = 0

    def opcode(self) -> None:
        self.opcodes += 1
        if self.opcodes > self.limits.max_opcodes:
            raise over_limit("pickle instructions", self.limits.max_opcodes, "max_opcodes")

    def add_elements(self, count: int) -> None:
        self.elements += count
        if self.elements > self.limits.max_elements:
            raise over_limit("container items", self.limits.max_elements, "max_elements")

    def add_data(self, count: int) -> None:
        self.data += count
        if self.data > self.data_limit:
            raise PickleLimitError(f"the checkpoint builds more than {self.data_limit:,} bytes of tensor data, "
                                   "more than its file can hold (its data blobs are reused)")

    def check_key(self, key: Any) -> None:
        """A dict key or set member must hash in bounded time: a tuple hashes every item it reaches."""
        pending, seen = [key], 0
        while pending:
            item = pending.pop()
            seen += 1
            if seen > self.limits.max_key_items:
                raise over_limit("items in one dict key or set member", self.limits.max_key_items, "max_key_items")
            if isinstance(item, tuple):
                pending.extend(item)


class Policy(Protocol):
    """What the machine may create: the caller's allow-list."""

    def find_global(self, module: str, name: str) -> Any: ...

    def call(self, func: Any, args: tuple) -> Any: ...

    def new(self, cls: Any, args: tuple, kwargs: dict) -> Any: ...

    def build(self, obj: Any, state: Any) -> None: ...


_MARK = object()


class _ClampedReader:
    """A binary stream whose reads never ask for more than is left (a pickle can declare any length).
    It has no `tell`, so `genops` does not ask for positions (nothing here uses them)."""

    def __init__(self, stream: BinaryIO, size: int, max_line: int):
        self.stream, self.left, self.max_line = stream, size, max_line

    def read(self, count: int = -1) -> bytes:
        data = self.stream.read(self.left if count < 0 else min(count, self.left))
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self.stream.readline(min(self.max_line + 1, self.left))
        self.left -= len(line)
        if len(line) > self.max_line:
            raise PickleLimitError(f"a text argument is longer than {self.max_line:,} bytes (max_line_bytes) {HINT}")
        return line


class Machine:
    """Runs one pickle (up to its STOP) from a stream positioned at its start."""

    def __init__(self, stream: BinaryIO, size: int, policy: Policy, budget: Budget,
                 persistent_load: Optional[Callable[[Any], Any]] = None):
        self.reader = _ClampedReader(stream, size, budget.limits.max_line_bytes)
        self.policy, self.budget, self.persistent_load = policy, budget, persistent_load
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    def load(self) -> Any:
        for opcode, arg, _ in pickletools.genops(cast(IO[bytes], self.reader)):  # genops only calls read/readline
            self.budget.opcode()
            if opcode.name == "STOP":
                return self.pop()
            handler = _HANDLERS.get(opcode.name)
            if handler is None:
                raise UnsafePickleError(f"pickle instruction {opcode.name} is not allowed in a network pickle")
            handler(self, arg)
        raise CheckpointError("the pickle ends before its STOP instruction (truncated)")

    # --- stack ------------------------------------------------------------------------------
    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise CheckpointError("malformed pickle: an instruction found its stack empty")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise CheckpointError("malformed pickle: an instruction found its stack empty")
        return self.stack[-1]

    def mark(self, _: Any = None) -> None:
        if len(self.metastack) >= self.budget.limits.max_nesting:
            raise over_limit("containers open at once", self.budget.limits.max_nesting, "max_nesting")
        self.metastack.append(self.stack)
        self.stack = []

    def pop_mark(self, _: Any = None) -> list[Any]:
        if not self.metastack:
            raise CheckpointError("malformed pickle: a container ends without its MARK")
        items, self.stack = self.stack, self.metastack.pop()
        self.budget.add_elements(len(items))
        return items

    def discard(self, _: Any = None) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    # --- atoms, memo ------------------------------------------------------------------------
    def atom(self, value: Any) -> None:
        if isinstance(value, int) and value.bit_length() > 8 * self.budget.limits.max_int_bytes:
            raise over_limit("bytes in one integer", self.budget.limits.max_int_bytes, "max_int_bytes")
        self.push(value)

    def put(self, index: int) -> None:
        if not 0 <= index < self.budget.limits.max_memo:
            raise over_limit("memo entries", self.budget.limits.max_memo, "max_memo")
        self.memo[index] = self.top()

    def memoize(self, _: Any = None) -> None:
        self.put(len(self.memo))

    def get(self, index: int) -> None:
        if index not in self.memo:
            raise CheckpointError(f"malformed pickle: memo entry {index} is read before it is written")
        self.push(self.memo[index])

    # --- containers -------------------------------------------------------------------------
    def make_tuple(self, items: list[Any]) -> None:
        self.push(tuple(items))

    def make_dict(self, items: list[Any]) -> dict:
        if len(items) % 2:
            raise CheckpointError("malformed pickle: a dict with a key but no value")
        for key in items[::2]:
            self.budget.check_key(key)
        return dict(zip(items[::2], items[1::2]))

    def make_frozenset(self, items: list[Any]) -> None:
        for item in items:
            self.budget.check_key(item)
        self.push(frozenset(items))

    def append(self, items: list[Any]) -> None:
        target = self.top()
        if type(target) is not list:
            raise UnsafePickleError(f"items appended to a {type(target).__name__}, not a list")
        target.extend(items)

    def set_items(self, items: list[Any]) -> None:
        target = self.top()
        if not isinstance(target, dict):
            raise UnsafePickleError(f"items set on a {type(target).__name__}, not a dict")
        target.update(self.make_dict(items))

    def add_items(self, items: list[Any]) -> None:
        target = self.top()
        if type(target) is not set:
            raise UnsafePickleError(f"items added to a {type(target).__name__}, not a set")
        for item in items:
            self.budget.check_key(item)
        target.update(items)

    def pop_items(self, count: int) -> list[Any]:
        items = [self.pop() for _ in range(count)][::-1]
        self.budget.add_elements(count)
        return items

    # --- objects ----------------------------------------------------------------------------
    def global_(self, module: str, name: str) -> None:
        if not isinstance(module, str) or not isinstance(name, str):
            raise CheckpointError("malformed pickle: a global named by something other than text")
        self.push(self.policy.find_global(module, name))

    def reduce(self, _: Any = None) -> None:
        args = self.pop()
        func = self.pop()
        if not isinstance(args, tuple):
            raise CheckpointError("malformed pickle: a call whose arguments are not a tuple")
        self.push(self.policy.call(func, args))

    def new_object(self, kwargs: Optional[dict] = None) -> None:
        args = self.pop()
        cls = self.pop()
        if not isinstance(args, tuple) or not isinstance(kwargs or {}, dict):
            raise CheckpointError("malformed pickle: object arguments are not a tuple")
        self.push(self.policy.new(cls, args, kwargs or {}))

    def build(self, _: Any = None) -> None:
        state = self.pop()
        self.policy.build(self.top(), state)

    def persistent(self, pid: Any) -> None:
        if self.persistent_load is None:
            raise UnsafePickleError("it refers to persistent objects outside itself")
        self.push(self.persistent_load(pid))


def _split_global(machine: Machine, arg: str) -> None:
    module, _, name = arg.partition(" ")
    machine.global_(module, name)


def _stack_global(machine: Machine, _: Any) -> None:
    name = machine.pop()
    machine.global_(machine.pop(), name)


def _setitem(machine: Machine, _: Any) -> None:
    machine.set_items(machine.pop_items(2))


def _new_object_ex(machine: Machine, _: Any) -> None:
    machine.new_object(machine.pop())


def _refuse(reason: str) -> Callable[[Machine, Any], None]:
    def refuse(machine: Machine, arg: Any) -> None:
        raise UnsafePickleError(f"{reason}")

    return refuse


_ATOMS = ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT", "STRING", "BINSTRING",
          "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
          "BINUNICODE8")
_HANDLERS: dict[str, Callable[[Machine, Any], object]] = {
    **{name: Machine.atom for name in _ATOMS},
    "PROTO": lambda m, arg: None,
    "FRAME": lambda m, arg: None,
    "NONE": lambda m, arg: m.push(None),
    "NEWTRUE": lambda m, arg: m.push(True),
    "NEWFALSE": lambda m, arg: m.push(False),
    "BYTEARRAY8": lambda m, arg: m.push(bytearray(arg)),
    "MARK": Machine.mark,
    "POP": Machine.discard,
    "POP_MARK": Machine.pop_mark,
    "DUP": lambda m, arg: m.push(m.top()),
    "PUT": Machine.put, "BINPUT": Machine.put, "LONG_BINPUT": Machine.put,
    "MEMOIZE": Machine.memoize,
    "GET": Machine.get, "BINGET": Machine.get, "LONG_BINGET": Machine.get,
    "EMPTY_LIST": lambda m, arg: m.push([]),
    "EMPTY_DICT": lambda m, arg: m.push({}),
    "EMPTY_SET": lambda m, arg: m.push(set()),
    "EMPTY_TUPLE": lambda m, arg: m.push(()),
    "TUPLE": lambda m, arg: m.make_tuple(m.pop_mark()),
    "TUPLE1": lambda m, arg: m.make_tuple(m.pop_items(1)),
    "TUPLE2": lambda m, arg: m.make_tuple(m.pop_items(2)),
    "TUPLE3": lambda m, arg: m.make_tuple(m.pop_items(3)),
    "LIST": lambda m, arg: m.push(m.pop_mark()),
    "DICT": lambda m, arg: m.push(m.make_dict(m.pop_mark())),
    "FROZENSET": lambda m, arg: m.make_frozenset(m.pop_mark()),
    "APPEND": lambda m, arg: m.append(m.pop_items(1)),
    "APPENDS": lambda m, arg: m.append(m.pop_mark()),
    "SETITEM": _setitem,
    "SETITEMS": lambda m, arg: m.set_items(m.pop_mark()),
    "ADDITEMS": lambda m, arg: m.add_items(m.pop_mark()),
    "GLOBAL": _split_global,
    "STACK_GLOBAL": _stack_global,
    "REDUCE": Machine.reduce,
    "NEWOBJ": lambda m, arg: m.new_object(),
    "NEWOBJ_EX": _new_object_ex,
    "BUILD": Machine.build,
    "BINPERSID": lambda m, arg: m.persistent(m.pop()),
    "INST": _refuse("protocol-0 object creation (INST) is not used by network pickles"),
    "OBJ": _refuse("protocol-1 object creation (OBJ) is not used by network pickles"),
    "PERSID": _refuse("text persistent ids are not used by network pickles"),
    "EXT1": _refuse("extension-registry globals are not allowed"),
    "EXT2": _refuse("extension-registry globals are not allowed"),
    "EXT4": _refuse("extension-registry globals are not allowed"),
    "NEXT_BUFFER": _refuse("out-of-band buffers are not allowed"),
    "READONLY_BUFFER": _refuse("out-of-band buffers are not allowed"),
}
