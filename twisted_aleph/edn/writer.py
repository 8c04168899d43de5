"""Python values -> EDN text, as Clojure's ``pr-str`` prints them.

Scalars are written by one dict lookup on the exact type. Collections of the
common types up to a small depth go through a short recursive fast path;
anything else through a loop over an explicit stack of iterators, so nesting
never recurses. Nesting deeper than ``max_depth`` (:data:`MAX_DEPTH`, the
reader's default: the project never writes what it cannot read back) and a
container that contains itself are EDNErrors. Cost: linear in the output,
save big integers (``bigint``: about what reading them back costs). Hot
writers are C callables on CPython, where a Python frame is most of the cost
of a small value (strings through the json module's C quoter, keywords
through ``attrgetter``); PyPy's JIT inlines plain Python functions instead,
so there the writers are those. Clojure can read everything written here,
except a Char outside the Basic Multilingual Plane (Clojure chars are UTF-16
units).

Integers are written as ``pr-str`` writes what Clojure reads from them: an
int in Java's long range plainly, a :class:`BigInt` and any int past a long
with ``N`` (``12345678901234567890N``: Clojure would read a BigInt from it
either way, and prints it so), so ``loads(dumps(x))`` writes back the same
text.

Every failure is an :class:`EDNError` raised before anything is returned,
so a transport that encodes first sends nothing for a value it cannot
write: an unknown type (:class:`EDNTypeError`, also a TypeError), a naive
datetime, a non-finite Decimal, too deep a value, a cycle, and text with a
surrogate code point (a lone UTF-16 half, as ``surrogateescape`` leaves:
it has no UTF-8 encoding, so the frame could not be sent).
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
from twisted_aleph.edn.errors import EDNError, EDNTypeError
from twisted_aleph.edn.limits import MAX_DEPTH
from twisted_aleph.edn.types import (
    BigInt, Char, FrozenDict, FrozenSet, Keyword, List, Symbol, TaggedLiteral, Vector,
)

__all__ = ["dumps"]

_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t",
                                 "\r": "\\r", "\f": "\\f", "\b": "\\b"})
_CHAR_NAMES = {"\n": "\\newline", " ": "\\space", "\t": "\\tab", "\b": "\\backspace",
               "\f": "\\formfeed", "\r": "\\return"}


_ON_PYPY = platform.python_implementation() == "PyPy"
_NEEDS_ESCAPE = re.compile('["\\\\\n\t\r\f\b]').search
_SURROGATE = re.compile("[\ud800-\udfff]").search

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


# The same for a lone string (dumps("...")): they refuse surrogates themselves,
# where a collection's text is checked once, whole. isascii() is O(1).
def _write_lone_str_python(s: str) -> str:
    if not s.isascii() and _has_surrogate(s):
        raise _not_utf8(s)
    if _NEEDS_ESCAPE(s) is None:
        return '"' + s + '"'
    return '"' + s.translate(_STRING_ESCAPES) + '"'


def _write_lone_str_c(s: str) -> str:
    quoted = _quote_json(s)  # type: ignore[misc]
    if "\\u" in quoted:
        return _write_lone_str_python(s)
    if not s.isascii():
        try:
            s.encode()  # the cheapest complete check (a regex costs more)
        except UnicodeEncodeError:
            raise _not_utf8(s) from None
    return quoted


if _ON_PYPY or _quote_json is None:
    _write_str, _write_lone_str = _write_str_python, _write_lone_str_python
else:
    _write_str, _write_lone_str = _write_str_c, _write_lone_str_c


def _write_int(i: int, _repr: Callable[[int], str] = int.__repr__) -> str:
    if -9223372036854775808 <= i <= 9223372036854775807:  # constants: no global lookups
        return _repr(i)
    return int_to_decimal(i) + "N"  # past a long: Clojure's BigInt


def _write_bigint(i: int) -> str:
    return int_to_decimal(i) + "N"


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
        raise EDNError("EDN has no decimal %s (only ##Inf/##NaN doubles)" % d)
    return str(d) + "M"


def _write_fraction(f: Fraction) -> str:
    if f.denominator == 1:
        return _write_int(f.numerator)
    return int_to_decimal(f.numerator) + "/" + int_to_decimal(f.denominator)


def _write_char(c: str) -> str:
    c = c[0]  # a plain str: Char hashes apart from str
    return _CHAR_NAMES.get(c) or "\\" + c


def _write_datetime(d: datetime) -> str:
    offset = d.utcoffset()
    if offset is None:
        raise EDNError("cannot write a naive datetime as #inst: give it a tzinfo "
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
    int: _write_int,
    BigInt: _write_bigint,
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

# Scalars written as tagged literals: a level of nesting, as the reader counts.
_TAGGED_SCALARS = (datetime, uuid.UUID)


def _checked(write: Callable[[Any], str]) -> Callable[[Any], str]:
    """``write``, refusing text with a surrogate (collections check once, at the end)."""
    def checked(value: Any) -> str:
        text = write(value)
        if text.isascii() or not _has_surrogate(text):
            return text
        raise _not_utf8(text)
    return checked


# dumps of a lone scalar: one lookup and one call. An int is written natively
# and checked after (text of fewer than 19 characters is in a long's range);
# text-bearing writers check for surrogates themselves (a collection's text
# is checked once, whole); tagged scalars take the general path, which
# counts their level against max_depth.
_int_repr = int.__repr__
_TOP_SCALARS: Dict[type, Callable[[Any], str]] = {
    **{t: w for t, w in _SCALARS.items() if t not in _TAGGED_SCALARS},
    int: _int_repr,
    str: _write_lone_str,
    Keyword: _checked(_write_named),
    Symbol: _checked(_write_named),
    Char: _checked(_write_char),
}

# Exact type -> (opening text, closing text, is a map).
_COLLECTIONS: Dict[type, Tuple[str, str, bool]] = {
    list: ("[", "]", False), tuple: ("[", "]", False), Vector: ("[", "]", False),
    List: ("(", ")", False),
    dict: ("{", "}", True), FrozenDict: ("{", "}", True),
    set: ("#{", "}", False), frozenset: ("#{", "}", False), FrozenSet: ("#{", "}", False),
}


def dumps(value: Any, max_depth: int = MAX_DEPTH) -> str:
    """EDN text for ``value`` (Clojure's ``pr-str``).

    list/tuple -> vector, dict/Mapping -> map, set -> set, List -> list,
    None/bool/int/float/str, BigInt -> ``1N``, Decimal -> ``1.5M``,
    Fraction -> ``1/2``, aware datetime -> ``#inst``, UUID -> ``#uuid``,
    Keyword/Symbol/Char, TaggedLiteral -> ``#tag value``.

    ``max_depth`` (pass it by name) bounds nesting as ``loads``'s does.
    Raises :class:`EDNError` for anything it cannot write, before returning
    any text: :class:`EDNTypeError` (also a ``TypeError``) for a type EDN has
    no form for; an EDNError for a naive datetime, a NaN Decimal, nesting
    deeper than ``max_depth`` (collections and tags, as ``loads`` counts
    them), a container that contains itself, or a surrogate code point in
    any text (it has no UTF-8 form).
    """
    write = _TOP_SCALARS.get(type(value))
    try:
        if write is not None:
            text = write(value)
            if write is not _int_repr or len(text) < 19:
                return text
            return _write_int(value)
        if max_depth <= _SHALLOW_DEPTH:
            raise _NotShallow()
        text = _write_shallow(value, 0)
    except (_NotShallow, ValueError):
        # Deep or unusual values; ints past Python's 4,300-digit str() limit
        # (the general writer has no limit, and raises any other error again).
        text = _write_nested(value, max_depth)
    if text.isascii() or not _has_surrogate(text):
        return text
    raise _not_utf8(text)


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` has no UTF-8 form (encoding beats a regex scan)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _not_utf8(text: str) -> EDNError:
    found = _SURROGATE(text)
    assert found is not None
    return EDNError("cannot write text with the surrogate code point U+%04X as EDN "
                    "(no UTF-8 form: decode with errors='replace', not 'surrogateescape')"
                    % ord(found.group()))


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


def _write_nested(value: Any, max_depth: int) -> str:
    """The general writer: any value, nesting on an explicit stack."""
    out: list = []
    scalars = _SCALARS
    tagged = _TAGGED_SCALARS
    stack: list = []  # frames: [iterator, closing text, is map, count, id]
    active = set()    # ids of the containers being written: cycle guard
    full = max_depth <= 0  # the top frame is at max_depth: no level left
    child = value
    while True:
        if child is not _NO_CHILD:
            frame = _open(child, out)
            if frame is None:
                if full and isinstance(child, tagged):
                    raise _too_deep(max_depth)
                out.append(_write_other_scalar(child))
            else:
                if len(stack) >= max_depth:
                    raise _too_deep(max_depth)
                ident = id(child)
                if ident in active:
                    raise EDNError("cannot write a container that contains itself as EDN")
                active.add(ident)
                frame.append(ident)
                stack.append(frame)
                full = len(stack) >= max_depth
        if not stack:
            return "".join(out)
        frame = stack[-1]
        it, is_map, count = frame[0], frame[2], frame[3]
        child = _NO_CHILD
        for item in it:
            if count:
                out.append(", " if is_map and not count & 1 else " ")
            count += 1
            write = scalars.get(type(item))
            if write is not None:
                if full and type(item) in tagged:
                    raise _too_deep(max_depth)
                out.append(write(item))
                continue
            frame[3] = count
            child = item
            break
        else:
            stack.pop()
            active.discard(frame[4])
            out.append(frame[1])
            full = len(stack) >= max_depth


_NO_CHILD = object()


def _too_deep(max_depth: int) -> EDNError:
    return EDNError("cannot write nesting deeper than max_depth=%d (collections and "
                    "tags; loads would refuse it)" % max_depth)


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
    """A scalar: its writer, or that of its base type (IntEnum, str subclasses...),
    else EDNTypeError."""
    write = _SCALARS.get(type(value))
    if write is not None:
        return write(value)
    if isinstance(value, int):  # bool is final: these are IntEnum and the like
        return _write_int(int(value))
    if isinstance(value, str):
        return _write_str(str(value))
    for kind in (float, Decimal, Fraction, datetime, uuid.UUID):
        if isinstance(value, kind):
            return _SCALARS[kind](value)
    raise EDNTypeError("cannot write %s object as EDN: %.80r (convert it to a dict, list, "
                       "str, number, Keyword... first)" % (type(value).__name__, value))
