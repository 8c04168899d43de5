"""The Python types EDN reads into, and EDN's equality for them.

Python says ``1 == True == 1.0`` and hashes them alike; EDN (Clojure's ``=``)
says they are three different values, and ``0``/``false`` two. Read
collections therefore never compare or hash their members with Python's
rules directly. Every member is first passed through :func:`edn_key`, which
returns the value itself for the types whose Python equality already is EDN's
(str, int, None, Keyword, Symbol, Char, UUID, datetime and the read
collections below) and wraps the others: ``True``/``False`` become two
private sentinels, floats, Decimals and Fractions become small tagged
wrappers that only equal their own kind. A map or set stores
``edn_key(member)`` in a plain dict, so ``{1 :a, true :b, 1.0 :c}`` keeps three
keys, lookups (``m[True]``) wrap the key the same way, and iteration gives
back the original members. When no key needs wrapping (keywords, strings,
ints: the common case) the dict is built in one C-level call.

``Vector`` and ``List`` are tuple subclasses that compare element-wise with
EDN equality, and like Clojure's sequential collections a vector equals a list
(and a Python list or tuple) with the same elements. ``Keyword`` and
``Symbol`` are interned (weakly), so they compare and hash by identity.
``Char`` is a ``str`` subclass that is never equal to a ``str``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Set
from decimal import Decimal
from fractions import Fraction
from itertools import chain
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, Tuple

__all__ = [
    "Keyword", "Symbol", "Char", "Vector", "List", "FrozenDict", "FrozenSet",
    "TaggedLiteral", "edn_key", "edn_equal",
]


class _Named:
    """Shared body of Keyword and Symbol: an interned ``namespace/name``."""

    __slots__ = ("name", "namespace", "_text", "__weakref__")
    _prefix = ""
    _interned: "weakref.WeakValueDictionary[str, _Named]"
    _lock = threading.Lock()

    name: str
    namespace: Optional[str]
    _text: str

    def __new__(cls, name: str, namespace: Optional[str] = None):
        full = name if namespace is None else namespace + "/" + name
        found = cls._interned.get(full)
        if found is not None:
            return found
        if not isinstance(full, str) or not full:
            raise ValueError("%s needs a non-empty name" % cls.__name__)
        if namespace is None:
            # Clojure's Symbol.intern: the first "/" splits, except "/" alone.
            slash = full.find("/")
            if slash > 0 and full != "/" and slash < len(full) - 1:
                namespace, name = full[:slash], full[slash + 1:]
        self = object.__new__(cls)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "_text", cls._prefix + full)
        with cls._lock:
            return cls._interned.setdefault(full, self)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError("%s is immutable" % type(self).__name__)

    def __reduce__(self):
        return (type(self), (self._text[len(self._prefix):],))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo: Any):
        return self

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, self._text[len(self._prefix):])

    def __lt__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._text < other._text


class Keyword(_Named):
    """An EDN keyword such as ``:a`` or ``:ns/a``: ``Keyword("ns/a")``."""

    __slots__ = ()
    _prefix = ":"
    _interned = weakref.WeakValueDictionary()


class Symbol(_Named):
    """An EDN symbol such as ``foo`` or ``ns/foo``: ``Symbol("ns/foo")``."""

    __slots__ = ()
    _interned = weakref.WeakValueDictionary()


class Char(str):
    """An EDN character (``\\a``): a one-character str that never equals a str."""

    __slots__ = ()

    def __new__(cls, c: str) -> "Char":
        if len(c) != 1:
            raise ValueError("a Char is exactly one character, got %r" % (c,))
        return str.__new__(cls, c)

    def __eq__(self, other: Any) -> bool:
        return type(other) is Char and str.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return str.__hash__(self) ^ 0x5C5C5C5C

    def __repr__(self) -> str:
        return "Char(%s)" % str.__repr__(self)


class _Sentinel:
    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return self.label


_TRUE_KEY = _Sentinel("<edn true>")
_FALSE_KEY = _Sentinel("<edn false>")


class _NumberKey:
    """A float/Decimal/Fraction that only equals a number of its own kind."""

    __slots__ = ("kind", "value")

    def __init__(self, value: Any) -> None:
        self.kind = type(value)
        self.value = value

    def __eq__(self, other: Any) -> bool:
        return (type(other) is _NumberKey and other.kind is self.kind
                and other.value == self.value)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.value) ^ id(self.kind)


def _seq_key(value: Any) -> "Vector":
    return Vector(value)


def _map_key(value: Any) -> "FrozenDict":
    return FrozenDict(value)


def _set_key(value: Any) -> "FrozenSet":
    return FrozenSet(value)


# Types whose Python equality is not EDN's: how to make their EDN key.
_KEY_WRAPPERS: Dict[type, Callable[[Any], Any]] = {
    bool: lambda b: _TRUE_KEY if b else _FALSE_KEY,
    float: _NumberKey,
    Decimal: _NumberKey,
    Fraction: _NumberKey,
    tuple: _seq_key,
    list: _seq_key,
    dict: _map_key,
    set: _set_key,
    frozenset: _set_key,
}
_WRAPPED_TYPES = frozenset(_KEY_WRAPPERS)


def edn_key(value: Any) -> Any:
    """A stand-in for ``value`` whose Python ``==``/``hash`` are EDN's."""
    wrap = _KEY_WRAPPERS.get(type(value))
    return value if wrap is None else wrap(value)


def edn_equal(a: Any, b: Any) -> bool:
    """Clojure's ``=`` on EDN values (``1``, ``true`` and ``1.0`` differ)."""
    if a is b:
        return True
    wrap = _KEY_WRAPPERS.get(type(a))
    if wrap is not None:
        a = wrap(a)
    wrap = _KEY_WRAPPERS.get(type(b))
    if wrap is not None:
        b = wrap(b)
    return bool(a == b)


class _Sequential(tuple):
    """Vector and List: immutable, hashable, EDN-equal to any sequence."""

    __slots__ = ()

    def __eq__(self, other: Any) -> bool:
        if self is other:
            return True
        if not isinstance(other, (tuple, list)):
            return NotImplemented
        if len(self) != len(other):
            return False
        wrappers = _KEY_WRAPPERS
        for a, b in zip(self, other):
            # edn_equal inlined: one Python frame per nesting level, not two.
            if a is b:
                continue
            wrap = wrappers.get(type(a))
            if wrap is not None:
                a = wrap(a)
            wrap = wrappers.get(type(b))
            if wrap is not None:
                b = wrap(b)
            if not a == b:
                return False
        return True

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple(map(edn_key, self)))

    def __repr__(self) -> str:
        return "%s(%s)" % (type(self).__name__, tuple.__repr__(self))


class Vector(_Sequential):
    """An EDN vector ``[...]`` as read; any list or tuple is written as one."""

    __slots__ = ()


class List(_Sequential):
    """An EDN list ``(...)``: a tuple subclass so the reader keeps the kind."""

    __slots__ = ()


_MISSING = object()


class FrozenDict(Mapping):
    """An immutable, hashable EDN map; keys compare with EDN equality.

    ``FrozenDict({...})`` or ``FrozenDict(pairs)``; duplicate EDN keys keep
    the last value here (the reader rejects them before building one).
    """

    __slots__ = ("_map", "_keys", "_cached_hash")
    _map: Dict[Any, Any]
    _keys: Optional[Dict[Any, Any]]
    _cached_hash: Optional[int]

    def __init__(self, source: Any = (), **kwargs: Any) -> None:
        pairs: Iterable[Tuple[Any, Any]]
        if isinstance(source, Mapping):
            pairs = source.items()
        else:
            pairs = source
        if kwargs:
            pairs = chain(pairs, kwargs.items())
        flat = []
        for k, v in pairs:
            flat.append(k)
            flat.append(v)
        self._fill(flat)

    @classmethod
    def _from_flat(cls, flat: list) -> "FrozenDict":
        """Build from ``[k1, v1, k2, v2, ...]`` (the reader's hot path)."""
        self = object.__new__(cls)
        self._fill(flat)
        return self

    def _fill(self, flat: list) -> None:
        keys = flat[0::2]
        if _WRAPPED_TYPES.isdisjoint(map(type, keys)):
            self._map = dict(zip(keys, flat[1::2]))
            self._keys = None
        else:
            wrapped = list(map(edn_key, keys))
            self._map = dict(zip(wrapped, flat[1::2]))
            self._keys = {ek: k for ek, k in zip(wrapped, keys) if ek is not k}
        self._cached_hash = None

    def __len__(self) -> int:
        return len(self._map)

    def __iter__(self) -> Iterator[Any]:
        if self._keys is None:
            return iter(self._map)
        get = self._keys.get
        return (get(ek, ek) for ek in self._map)

    def __getitem__(self, key: Any) -> Any:
        wrap = _KEY_WRAPPERS.get(type(key))
        return self._map[key if wrap is None else wrap(key)]

    def get(self, key: Any, default: Any = None) -> Any:
        wrap = _KEY_WRAPPERS.get(type(key))
        return self._map.get(key if wrap is None else wrap(key), default)

    def __contains__(self, key: Any) -> bool:
        wrap = _KEY_WRAPPERS.get(type(key))
        try:
            return (key if wrap is None else wrap(key)) in self._map
        except TypeError:
            return False

    def items(self):  # type: ignore[override]
        if self._keys is None:
            return self._map.items()
        get = self._keys.get
        return [(get(ek, ek), v) for ek, v in self._map.items()]

    def values(self):  # type: ignore[override]
        return self._map.values()

    def __eq__(self, other: Any) -> bool:
        if self is other:
            return True
        if isinstance(other, FrozenDict):
            theirs = other._map
        elif isinstance(other, Mapping):
            try:
                theirs = {edn_key(k): v for k, v in other.items()}
            except TypeError:
                return False
        else:
            return NotImplemented
        mine = self._map
        if len(mine) != len(theirs) or mine.keys() != theirs.keys():
            return False
        wrappers = _KEY_WRAPPERS
        for ek, v in mine.items():
            w = theirs[ek]
            if v is w:
                continue
            wrap = wrappers.get(type(v))
            if wrap is not None:
                v = wrap(v)
            wrap = wrappers.get(type(w))
            if wrap is not None:
                w = wrap(w)
            if not v == w:
                return False
        return True

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if self._cached_hash is None:
            self._cached_hash = hash(frozenset(
                (ek, edn_key(v)) for ek, v in self._map.items()))
        return self._cached_hash

    def __repr__(self) -> str:
        return "FrozenDict({%s})" % ", ".join(
            "%r: %r" % kv for kv in self.items())

    def __reduce__(self):
        return (FrozenDict, (list(self.items()),))


class FrozenSet(Set):
    """An immutable, hashable EDN set; members compare with EDN equality."""

    __slots__ = ("_map", "_cached_hash")
    _map: Dict[Any, Any]
    _cached_hash: Optional[int]

    def __init__(self, members: Iterable[Any] = ()) -> None:
        self._fill(list(members))

    @classmethod
    def _from_list(cls, items: list) -> "FrozenSet":
        self = object.__new__(cls)
        self._fill(items)
        return self

    def _fill(self, items: list) -> None:
        if _WRAPPED_TYPES.isdisjoint(map(type, items)):
            self._map = dict(zip(items, items))
        else:
            self._map = dict(zip(map(edn_key, items), items))
        self._cached_hash = None

    def __len__(self) -> int:
        return len(self._map)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._map.values())

    def __contains__(self, member: Any) -> bool:
        wrap = _KEY_WRAPPERS.get(type(member))
        try:
            return (member if wrap is None else wrap(member)) in self._map
        except TypeError:
            return False

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> "FrozenSet":
        return cls(it)

    def __eq__(self, other: Any) -> bool:
        if self is other:
            return True
        if isinstance(other, FrozenSet):
            theirs = other._map
        elif isinstance(other, Set):
            try:
                theirs = dict.fromkeys(map(edn_key, other))
            except TypeError:
                return False
        else:
            return NotImplemented
        return self._map.keys() == theirs.keys()

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if self._cached_hash is None:
            self._cached_hash = hash(frozenset(self._map))
        return self._cached_hash

    def __repr__(self) -> str:
        return "FrozenSet({%s})" % ", ".join(map(repr, self))

    def __reduce__(self):
        return (FrozenSet, (list(self),))


class TaggedLiteral:
    """``#tag value`` kept as is: pass ``default_tag=TaggedLiteral`` to loads."""

    __slots__ = ("tag", "value")

    def __init__(self, tag: str, value: Any) -> None:
        self.tag = tag
        self.value = value

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, TaggedLiteral):
            return NotImplemented
        return self.tag == other.tag and edn_equal(self.value, other.value)

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.tag, edn_key(self.value)))

    def __repr__(self) -> str:
        return "TaggedLiteral(%r, %r)" % (self.tag, self.value)
