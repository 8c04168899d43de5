"""Python values -> EDN text, as Clojure's ``pr-str`` prints them.

Scalars are written by one dict lookup on the exact type. Collections of the
common types up to a small depth go through a short recursive fast path;
anything else through a loop over an explicit stack of iterators, so any
nesting depth is fine (no recursion) and a container that contains itself is
a ValueError instead of a hang. Cost: linear in the output. Hot writers are
C callables on CPython, where a Python frame is most of the cost of a small
value (strings through the json module's C quoter, keywords through
``attrgetter``); PyPy's JIT inlines plain Python functions instead, so there
the writers are those. Clojure can read everything written here,
except a Char outside the Basic Multilingual Plane (Clojure chars are UTF-16
units). Big ints are written without ``N``; Clojure reads them as BigInts.
Ints of any size are written: past Python's 4,300-digit ``str()`` limit the
fast path's ValueError sends them to the general writer, which uses
``bigint``.
"""

from __future__ import annotations

import json.encoder
import math
import platform
import re
import uuid
from collections.abc import Mapping, Set
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from itertools import chain
from operator import attrgetter
from typing import Any, Callable, Dict, Optional, Tuple

from twisted_aleph.edn.bigint import int_to_decimal
from twisted_aleph.edn.types import (
    Char, FrozenDict, FrozenSet, Keyword, List, Symbol, TaggedLiteral, Vector,
)

__all__ = ["dumps"]

_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t",
                                 "\r": "\\r", "\f": "\\f", "\b": "\\b"})
_CHAR_NAMES = {"\n": "\\newline", " ": "\\space", "\t": "\\tab", "\b": "\\backspace",
               "\f": "\\formfeed", "\r": "\\return"}


_ON_PYPY = platform.python_implementation() == "PyPy"
_NEEDS_ESCAPE = re.compile('["\\\\\n\t\r\f\b]').search

# CPython's C string quoter; PyPy has none (and needs none: its JIT).
_quote_json: Optional[Callable[[str], str]] = getattr(json.encoder, "c_encode_basestring", None)


def _write_str_python(s: str) -> str:
    if _NEEDS_ESCAPE(s) is None:  # the common case: 2x cheaper than translate
        return '"' + s + '"'
    return '"' + s.translate(_STRING_ESCAPES) + '"'


def _write_str_c(s: str) -> str:
    # JSON escapes " \ \n \t \r \f \b exactly as EDN does; other control
    # characters it writes as \u00XX, which pr-str does not: those strings
    # (and any with a backslash-u, rare) take the exact path.
    quoted = _quote_json(s)  # type: ignore[misc]
    if "\\u" not in quoted:
        return quoted
    return '"' + s.translate(_STRING_ESCAPES) + '"'


_write_str = _write_str_python if _ON_PYPY or _quote_json is None else _write_str_c


def _write_float(f: float) -> str:
    if f != f:
        return "##NaN"
    if f == math.inf:
        return "##Inf"
    if f == -math.inf:
        return "##-Inf"
    return repr(f)


def _write_decimal(d: Decimal) -> str:
    if not d.is_finite():
        raise ValueError("EDN has no decimal %s (only ##Inf/##NaN doubles)" % d)
    return str(d) + "M"


def _write_fraction(f: Fraction) -> str:
    if f.denominator == 1:
        return int_to_decimal(f.numerator)
    return int_to_decimal(f.numerator) + "/" + int_to_decimal(f.denominator)


def _write_char(c: str) -> str:
    c = c[0]  # a plain str: Char hashes apart from str
    return _CHAR_NAMES.get(c) or "\\" + c


def _write_datetime(d: datetime) -> str:
    offset = d.utcoffset()
    if offset is None:
        raise ValueError("cannot write a naive datetime as #inst: give it a tzinfo "
                         "(EDN instants are absolute)")
    if offset % timedelta(minutes=1):
        d = d.astimezone(timezone.utc)  # RFC 3339 offsets have no seconds
    return '#inst "%s"' % d.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _write_uuid(u: uuid.UUID) -> str:
    return '#uuid "%s"' % u


def _write_named(x: Any) -> str:
    return x._text


# On CPython a C callable beats any Python function; PyPy inlines the Python ones.
if _ON_PYPY:
    _write_nil: Callable[[Any], str] = lambda _: "nil"
    _write_bool: Callable[[Any], str] = lambda b: "true" if b else "false"
    _write_named_fast: Callable[[Any], str] = _write_named
else:
    _write_nil = "nil".format  # ignores its argument
    _write_bool = ("false", "true").__getitem__
    _write_named_fast = attrgetter("_text")


# Exact type -> writer for everything that is not a collection.
_SCALARS: Dict[type, Callable[[Any], str]] = {
    type(None): _write_nil,
    bool: _write_bool,
    int: int.__repr__,
    float: _write_float,
    str: _write_str,
    Keyword: _write_named_fast,
    Symbol: _write_named_fast,
    Char: _write_char,
    Decimal: _write_decimal,
    Fraction: _write_fraction,
    datetime: _write_datetime,
    uuid.UUID: _write_uuid,
}

# The general writer's: ints of any size (a Python function, slower on CPython).
_SCALARS_ANY_SIZE: Dict[type, Callable[[Any], str]] = {**_SCALARS, int: int_to_decimal}

# Exact type -> (opening text, closing text, is a map).
_COLLECTIONS: Dict[type, Tuple[str, str, bool]] = {
    list: ("[", "]", False), tuple: ("[", "]", False), Vector: ("[", "]", False),
    List: ("(", ")", False),
    dict: ("{", "}", True), FrozenDict: ("{", "}", True),
    set: ("#{", "}", False), frozenset: ("#{", "}", False), FrozenSet: ("#{", "}", False),
}


def dumps(value: Any) -> str:
    """EDN text for ``value`` (Clojure's ``pr-str``).

    list/tuple -> vector, dict/Mapping -> map, set -> set, List -> list,
    None/bool/int/float/str, Decimal -> ``1.5M``, Fraction -> ``1/2``,
    aware datetime -> ``#inst``, UUID -> ``#uuid``, Keyword/Symbol/Char,
    TaggedLiteral -> ``#tag value``. Anything else is a TypeError.
    """
    write = _SCALARS.get(type(value))
    try:
        if write is not None:
            return write(value)
        return _write_shallow(value, 0)
    except (_NotShallow, ValueError):
        # Deep or unusual values; ints past Python's 4,300-digit str() limit
        # (the general writer has no limit, and raises any other ValueError).
        pass
    out: list = []
    _write_nested(value, out)
    return "".join(out)


class _NotShallow(Exception):
    """Raised by the fast path for what only the general writer handles."""


_SHALLOW_DEPTH = 32


def _write_shallow(value: Any, depth: int) -> str:
    """The fast path: plain recursion over the common types, up to a small depth.

    Deeper values, self-containing ones (they go deep), subclasses, tagged
    literals and unknown types fall back to the general, iterative writer.
    """
    shape = _COLLECTIONS.get(type(value))
    if shape is None or depth >= _SHALLOW_DEPTH:
        raise _NotShallow()
    scalars = _SCALARS
    depth += 1
    parts = []
    if shape[2]:
        for k, v in value.items():
            if type(k) is Keyword:  # the usual EDN map key: no call at all
                key = k._text
            else:
                write = scalars.get(type(k))
                key = write(k) if write is not None else _write_shallow(k, depth)
            write = scalars.get(type(v))
            parts.append(key + " " + (write(v) if write is not None
                                      else _write_shallow(v, depth)))
        return shape[0] + ", ".join(parts) + shape[1]
    for x in value:
        write = scalars.get(type(x))
        parts.append(write(x) if write is not None else _write_shallow(x, depth))
    return shape[0] + " ".join(parts) + shape[1]


def _write_nested(value: Any, out: list) -> None:
    scalars = _SCALARS_ANY_SIZE
    stack: list = []  # frames: [iterator, closing text, is map, count, id]
    active = set()    # ids of the containers being written: cycle guard
    child = value
    while True:
        if child is not _NO_CHILD:
            frame = _open(child, out)
            if frame is None:
                out.append(_write_other_scalar(child))
            else:
                ident = id(child)
                if ident in active:
                    raise ValueError("cannot write a container that contains itself as EDN")
                active.add(ident)
                frame.append(ident)
                stack.append(frame)
        if not stack:
            return
        frame = stack[-1]
        it, _close, is_map, count = frame[0], frame[1], frame[2], frame[3]
        child = _NO_CHILD
        for item in it:
            if count:
                out.append(", " if is_map and not count & 1 else " ")
            count += 1
            write = scalars.get(type(item))
            if write is not None:
                out.append(write(item))
                continue
            frame[3] = count
            child = item
            break
        else:
            stack.pop()
            active.discard(frame[4])
            out.append(frame[1])


_NO_CHILD = object()


def _open(value: Any, out: list) -> Any:
    """Write the opening of a collection and return its frame (None: not one)."""
    shape = _COLLECTIONS.get(type(value))
    if shape is None:
        if isinstance(value, TaggedLiteral):
            out.append("#%s " % value.tag)
            return [iter((value.value,)), "", False, 0]
        if isinstance(value, Mapping):
            shape = ("{", "}", True)
        elif isinstance(value, (Set, set, frozenset)):
            shape = ("#{", "}", False)
        elif isinstance(value, (list, tuple)):
            shape = ("[", "]", False)
        else:
            return None
    opening, closing, is_map = shape
    out.append(opening)
    items = chain.from_iterable(value.items()) if is_map else iter(value)
    return [items, closing, is_map, 0]


def _write_other_scalar(value: Any) -> str:
    """Subclasses of the scalar types (IntEnum, str subclasses...), else TypeError."""
    if isinstance(value, int):  # bool is final: these are IntEnum and the like
        return int_to_decimal(int(value))
    if isinstance(value, str):
        return _write_str(str(value))
    for kind in (float, Decimal, Fraction, datetime, uuid.UUID):
        if isinstance(value, kind):
            return _SCALARS[kind](value)
    raise TypeError("cannot write %s object as EDN: %.80r (convert it to a dict, "
                    "list, str, number, Keyword... first)" % (type(value).__name__, value))
