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
``Char`` is a ``str`` subclass that is never equal to a ``str``. ``BigInt``
is an ``int`` subclass for Clojure's BigInts (``1N``): equal to, and hashing
as, the int of the same value, as ``(= 1 1N)`` in Clojure.

Values read at the deepest nesting ``loads`` allows (1,000 levels, what
Clojure itself reads and prints) stay usable: ``==``, ``hash`` and ``repr``
of the read collections walk nested collections with explicit stacks instead
of recursing, so they never reach Python's recursion limit (1,000 frames on
CPython). The common shallow cases keep their one-line fast paths.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Set
from decimal import Decimal
from fractions import Fraction
from itertools import chain
from typing import Any, Callable, Dict, Iterable, Iterator, List as TList, Optional, Tuple

from twisted_aleph.edn.bigint import int_to_decimal

__all__ = [
    "Keyword", "Symbol", "Char", "BigInt", "Vector", "List", "FrozenDict", "FrozenSet",
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


def _keeping_bigint(name: str) -> Callable[..., Any]:
    """``int``'s method ``name``, with an int result made a BigInt again."""
    op = getattr(int, name)

    def method(self: "BigInt", *args: Any) -> Any:
        result = op(self, *args)
        return BigInt(result) if type(result) is int else result

    method.__name__ = name
    method.__qualname__ = "BigInt." + name
    return method


class BigInt(int):
    """An integer EDN writes with ``N``: Clojure's ``clojure.lang.BigInt``.

    ``loads`` makes one of ``1N`` and of any integer outside Java's long
    range (Clojure reads ``12345678901234567890`` as a BigInt too); ``dumps``
    writes it back as ``1N``, so a Clojure peer that dispatches on type sees
    a BigInt again. It is an ``int``: equal to, and hashing as, the int of the
    same value, as ``(= 1 1N)`` is true and ``{1 :a}`` finds ``1N``.

    Arithmetic keeps the type as Clojure's does (``(inc 1N)`` is ``2N``):
    ``+ - * // %``, ``divmod`` and ``**`` (to an int exponent >= 0) with ints
    or BigInts, and unary ``- + abs``, give BigInts. Everything else gives
    what ``int`` gives: ``/`` a float, bitwise operators an int, a float,
    Fraction or Decimal operand a float, Fraction or Decimal (Clojure gives
    a double, ratio or BigDecimal there too).
    """

    __slots__ = ()

    __add__ = _keeping_bigint("__add__")
    __radd__ = _keeping_bigint("__radd__")
    __sub__ = _keeping_bigint("__sub__")
    __rsub__ = _keeping_bigint("__rsub__")
    __mul__ = _keeping_bigint("__mul__")
    __rmul__ = _keeping_bigint("__rmul__")
    __floordiv__ = _keeping_bigint("__floordiv__")
    __rfloordiv__ = _keeping_bigint("__rfloordiv__")
    __mod__ = _keeping_bigint("__mod__")
    __rmod__ = _keeping_bigint("__rmod__")
    __pow__ = _keeping_bigint("__pow__")
    __rpow__ = _keeping_bigint("__rpow__")
    __neg__ = _keeping_bigint("__neg__")
    __pos__ = _keeping_bigint("__pos__")
    __abs__ = _keeping_bigint("__abs__")

    def __divmod__(self, other: Any) -> Any:
        result = int.__divmod__(self, other)
        if result is NotImplemented or type(result[0]) is not int:
            return result
        return BigInt(result[0]), BigInt(result[1])

    def __rdivmod__(self, other: Any) -> Any:
        result = int.__rdivmod__(self, other)
        if result is NotImplemented or type(result[0]) is not int:
            return result
        return BigInt(result[0]), BigInt(result[1])

    def __repr__(self) -> str:
        return "BigInt(%s)" % int_to_decimal(self)

    __str__ = int.__repr__  # str() and print() as for an int


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
    """Clojure's ``=`` on EDN values (``1``, ``true`` and ``1.0`` differ).

    Nested collections are compared with an explicit stack: any depth works.
    """
    wrappers = _KEY_WRAPPERS
    pairs = [(a, b)]
    while pairs:
        a, b = pairs.pop()
        if a is b:
            continue
        wrap = wrappers.get(type(a))
        if wrap is not None:
            a = wrap(a)
        wrap = wrappers.get(type(b))
        if wrap is not None:
            b = wrap(b)
        if isinstance(a, _Sequential) or isinstance(b, _Sequential):
            if not (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list))
                    and len(a) == len(b)):
                return False
            pairs.extend(zip(a, b))
        elif isinstance(a, FrozenDict) and isinstance(b, FrozenDict):
            if not _pair_keys(a._map, b._map, pairs, True):
                return False
        elif isinstance(a, FrozenSet) and isinstance(b, FrozenSet):
            if not _pair_keys(a._map, b._map, pairs, False):
                return False
        elif isinstance(a, TaggedLiteral) and isinstance(b, TaggedLiteral):
            if a.tag != b.tag:
                return False
            pairs.append((a.value, b.value))
        elif not a == b:
            return False
    return True


def _pair_keys(mine: Dict[Any, Any], theirs: Dict[Any, Any], pairs: TList[Any],
               with_values: bool) -> bool:
    """Match each key of ``mine`` (a read map's or set's dict of EDN keys) with
    the equal key of ``theirs``, pushing what is left to compare on ``pairs``
    (and the two values, for maps). False when some key has no match.

    A collection key is matched by its hash, not by a dict lookup: a lookup
    would compare it with Python's ``==``, one recursion per level of sets in
    sets. Only keys whose hashes collide are compared on the spot.
    """
    if len(mine) != len(theirs):
        return False
    nested = _COLLECTION_TYPES
    by_hash: Optional[Dict[int, TList[Any]]] = None
    for key, value in mine.items():
        if type(key) not in nested:  # a scalar: the lookup compares it cheaply
            if key not in theirs:
                return False
            match = key
        else:
            if by_hash is None:
                by_hash = {}
                for k in theirs:
                    if type(k) in nested:
                        by_hash.setdefault(hash(k), []).append(k)
            found = by_hash.get(hash(key))
            if not found:
                return False
            if len(found) == 1:
                match = found[0]
                pairs.append((key, match))
            else:
                match = next((k for k in found if edn_equal(key, k)), _MISSING)
                if match is _MISSING:
                    return False
        if with_values:
            pairs.append((value, theirs[match]))
    return True


def _deep_hash(root: Any) -> int:
    """``hash(root)`` for a read collection holding collections: a post-order
    walk with a stack. Agrees with the one-line hashes of flat collections."""
    stack: TList[Tuple[Any, Iterator[Any], TList[Any]]] = [(root, _hash_parts(root), [])]
    while True:
        node, parts, done = stack[-1]
        for part in parts:
            if type(part) in _COLLECTION_TYPES:
                cached = getattr(part, "_cached_hash", None)
                if cached is None:
                    stack.append((part, _hash_parts(part), []))
                    break
                done.append(cached)
            else:
                done.append(part)
        else:
            stack.pop()
            h = _finish_hash(node, done)
            if not stack:
                return h
            stack[-1][2].append(h)


def _hash_parts(node: Any) -> Iterator[Any]:
    if isinstance(node, FrozenDict):
        return chain.from_iterable((ek, edn_key(v)) for ek, v in node._map.items())
    if isinstance(node, FrozenSet):
        return iter(node._map)
    if isinstance(node, TaggedLiteral):
        return iter((edn_key(node.value),))
    return map(edn_key, node)


def _finish_hash(node: Any, parts: TList[Any]) -> int:
    # A nested collection's part is its hash (an int): collisions, never a mismatch.
    if isinstance(node, FrozenDict):
        node._cached_hash = hash(frozenset(zip(parts[0::2], parts[1::2])))
        return node._cached_hash
    if isinstance(node, FrozenSet):
        node._cached_hash = hash(frozenset(parts))
        return node._cached_hash
    if isinstance(node, TaggedLiteral):
        return hash((node.tag, parts[0]))
    return hash(tuple(parts))


def _deep_repr(root: Any) -> str:
    """``repr`` of a read collection, nested ones included, without recursion."""
    out: TList[str] = []
    stack: TList[TList[Any]] = []  # frames: [items, is a map, closing, count]
    item = root
    while True:
        frame = _open_repr(item, out)
        if frame is None:
            out.append(repr(item))
        else:
            stack.append(frame)
        while stack:
            frame = stack[-1]
            item = next(frame[0], _MISSING)
            if item is _MISSING:
                stack.pop()
                closing = frame[2]
                out.append(",))" if closing == "))" and frame[3] == 1 else closing)
                continue
            if frame[3]:
                out.append(": " if frame[1] and frame[3] & 1 else ", ")
            frame[3] += 1
            break
        else:
            return "".join(out)


def _open_repr(x: Any, out: TList[str]) -> Optional[TList[Any]]:
    if isinstance(x, _Sequential):
        out.append(type(x).__name__ + "((")
        return [iter(x), False, "))", 0]
    if isinstance(x, FrozenDict):
        out.append("FrozenDict({")
        return [chain.from_iterable(x.items()), True, "})", 0]
    if isinstance(x, FrozenSet):
        out.append("FrozenSet({")
        return [iter(x), False, "})", 0]
    if isinstance(x, TaggedLiteral):
        out.append("TaggedLiteral(%r, " % (x.tag,))
        return [iter((x.value,)), False, ")", 0]
    return None


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
        nested = _NESTED_TYPES
        for a, b in zip(self, other):
            # edn_equal inlined for flat sequences, the common case
            if a is b:
                continue
            ta = type(a)
            tb = type(b)
            if ta in nested or tb in nested:
                return edn_equal(self, other)  # collections inside: no recursion
            wrap = wrappers.get(ta)
            if wrap is not None:
                a = wrap(a)
            wrap = wrappers.get(tb)
            if wrap is not None:
                b = wrap(b)
            if not a == b:
                return False
        return True

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if _NESTED_TYPES.isdisjoint(map(type, self)):
            return hash(tuple(map(edn_key, self)))
        return _deep_hash(self)

    def __repr__(self) -> str:
        return _deep_repr(self)


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
        if not isinstance(other, FrozenDict):
            if not isinstance(other, Mapping):
                return NotImplemented
            try:
                other = FrozenDict(other)
            except TypeError:
                return False
        return edn_equal(self, other)

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if self._cached_hash is None:
            m = self._map
            if _NESTED_TYPES.isdisjoint(map(type, m)) and _NESTED_TYPES.isdisjoint(
                    map(type, m.values())):
                self._cached_hash = hash(frozenset((ek, edn_key(v)) for ek, v in m.items()))
            else:
                return _deep_hash(self)  # caches it
        return self._cached_hash

    def __repr__(self) -> str:
        return _deep_repr(self)

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
        if not isinstance(other, FrozenSet):
            if not isinstance(other, Set):
                return NotImplemented
            try:
                other = FrozenSet(other)
            except TypeError:
                return False
        if _NESTED_TYPES.isdisjoint(map(type, self._map)):
            return self._map.keys() == other._map.keys()  # scalars: no recursion
        return edn_equal(self, other)

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if self._cached_hash is None:
            if _NESTED_TYPES.isdisjoint(map(type, self._map)):
                self._cached_hash = hash(frozenset(self._map))
            else:
                return _deep_hash(self)  # caches it
        return self._cached_hash

    def __repr__(self) -> str:
        return _deep_repr(self)

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
        return edn_equal(self, other)

    def __ne__(self, other: Any) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        if type(self.value) in _NESTED_TYPES:
            return _deep_hash(self)
        return hash((self.tag, edn_key(self.value)))

    def __repr__(self) -> str:
        return _deep_repr(self)


# Read collections: compared, hashed and repr'd by the loops above.
_COLLECTION_TYPES = frozenset([Vector, List, FrozenDict, FrozenSet, TaggedLiteral])
# Members that may hold collections (plain ones become read ones in edn_key).
_NESTED_TYPES = _COLLECTION_TYPES | frozenset([tuple, list, dict, set, frozenset])
