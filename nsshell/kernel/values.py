"""Small value classes without dataclasses (start-up: `import dataclasses` pulls in
inspect, ast, dis, tokenize and enum, and each @dataclass compiles its methods when
the module is imported, ~0.5 ms a class).

A subclass names its fields in `_fields` (and `__slots__`) and writes its own
__init__; equality, hashing and repr are over those fields, as the dataclasses
they replace gave them.  `Frozen` refuses assignment after __init__ (which sets
its fields with object.__setattr__) and pickles by value; `Value` is mutable and
unhashable.  `replace(obj, **changes)` is dataclasses.replace for both.
"""

from __future__ import annotations


def _values(obj) -> tuple:
    return tuple([getattr(obj, f) for f in obj._fields])


def _repr(obj) -> str:
    return (f"{type(obj).__qualname__}("
            + ", ".join([f"{f}={getattr(obj, f)!r}" for f in obj._fields]) + ")")


class _Fields:
    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _values = _values
    __repr__ = _repr

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return _values(self) == _values(other)
        return NotImplemented


class Value(_Fields):
    """Mutable: ==, != and repr over _fields; not hashable (as @dataclass)."""
    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]


class Frozen(_Fields):
    """Immutable: ==, hash and repr over _fields (as @dataclass(frozen=True))."""
    __slots__ = ()

    def __hash__(self):
        return hash(_values(self))

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self):
        return (_rebuild, (self.__class__, _values(self)))


def _rebuild(cls, values: tuple):
    obj = object.__new__(cls)
    for f, v in zip(cls._fields, values):
        object.__setattr__(obj, f, v)
    return obj


def replace(obj, **changes):
    """A copy of OBJ (a Value or a Frozen) with CHANGES (field -> value)."""
    unknown = set(changes) - set(obj._fields)
    if unknown:
        raise TypeError(f"{type(obj).__qualname__} has no field {sorted(unknown)[0]!r}")
    new = object.__new__(obj.__class__)
    setter = object.__setattr__
    for f in obj._fields:
        setter(new, f, changes[f] if f in changes else getattr(obj, f))
    for k, v in getattr(obj, "__dict__", {}).items():   # attributes beyond the fields
        if k not in obj._fields:
            setter(new, k, v)
    return new
