"""EDN text -> Python values, following Clojure 1.11's ``clojure.edn/read-string``.

One compiled regex skips whitespace/commas/comments and matches the next
token in a single call; a flat loop dispatches on which group matched and
keeps open collections on an explicit stack, so nesting never recurses (the
depth is capped at ``max_depth``, default :data:`MAX_DEPTH`, 1,000 levels:
what Clojure reads and prints). Cost: one regex match per token plus O(1)
work, so time and memory are linear in the text, save big integers, which
cost more than linear (``bigint``): each may have up to ``max_int_digits``
digits and all of one call's together ``max_total_int_digits`` (``limits``
says how they count); keywords and symbols come from a bounded token cache,
so a repeated ``:key`` costs a dict lookup.

Like ``read-string``, :func:`loads` reads the first form and ignores the rest
of the text (``loads("1 2")`` is 1), and text with no form at all (empty,
whitespace, comments, ``#_`` discards) is None (``eof=`` to choose another
value); :func:`loads_all` reads every form, ``[]`` for none. Integers are ints,
except ``1N`` and those outside Java's long range, which are
:class:`~twisted_aleph.edn.types.BigInt`, as Clojure reads them. Digits are
ASCII only: a token starting with another Unicode digit (``٣``) is an invalid
number, as in Clojure; ``\\u`` escapes take ASCII hex digits only (Clojure's
reader also takes other Unicode digits there). Clojure's reader extras are
accepted: ``0x1F``, ``017`` (octal), ``2r101``, ratios ``1/2`` (-> Fraction),
``#:ns{...}`` namespaced maps, ``^meta`` (read and dropped), octal ``\\o101``
and string ``\\101`` escapes. ``#inst`` fractions beyond microseconds are
truncated.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import partial
from typing import Any, Callable, Dict, List as TList, Mapping, Optional, Tuple

from twisted_aleph.edn.bigint import decimal_digits, int_from_digits
from twisted_aleph.edn.errors import EDNError
from twisted_aleph.edn.limits import (
    FREE_INT_DIGITS, MAX_DEPTH, MAX_INT_DIGITS, MAX_TOTAL_INT_DIGITS,
)
from twisted_aleph.edn.types import (
    BigInt, Char, FrozenDict, FrozenSet, Keyword, List, Symbol, Vector, edn_key,
)
from twisted_aleph.edn.writer import dumps

__all__ = ["loads", "loads_all", "MAX_DEPTH", "MAX_INT_DIGITS", "MAX_TOTAL_INT_DIGITS"]

# Java's Character.isWhitespace, plus the comma.
_WS = "\t\n\x0b\x0c\r\x1c-\x1f ,\u1680\u2000-\u2006\u2008-\u200a\u2028\u2029\u205f\u3000"
# Characters that end a token: whitespace and Clojure's terminating macros.
_TERM = _WS + '";^()\\[\\]{}\\\\'
_SKIP = "[%s]*(?:;[^\\n\\r]*[%s]*)*" % (_WS, _WS)

# Group 1 is the skipped whitespace, taken whole: "(?=(x))\1" is an atomic group
# (no backtracking into a comment), which Python 3.9's re lacks.
_G_STRING, _G_NUMBER, _G_SYMBOL, _G_DELIM, _G_CHAR, _G_DISPATCH, _G_META = range(2, 9)
_TOKEN = re.compile(
    "(?=(" + _SKIP + "))\\1(?:"
    '"([^"\\\\]*(?:\\\\.[^"\\\\]*)*)"'       # 2 string body
    "|([-+]?[0-9][^%s#]*)"                    # 3 number token
    "|([^%s#0-9][^%s]*)"                      # 4 symbol, keyword, nil, true, false
    "|([()\\[\\]{}])"                         # 5 delimiter
    "|\\\\(.[^%s]*)"                          # 6 character
    "|(#)"                                    # 7 dispatch
    "|(\\^)"                                  # 8 metadata
    "|(.)"                                    # 9 anything else: an error
    ")" % (_TERM, _TERM, _TERM, _TERM), re.S)
_SKIP_RE = re.compile(_SKIP)
_NAME_TOKEN = re.compile("[^%s]+" % _TERM)

_INT_RE = re.compile(
    r"([-+]?)(?:(0)|([1-9][0-9]*)|0[xX]([0-9A-Fa-f]+)|0([0-7]+)"
    r"|([1-9][0-9]?)[rR]([0-9A-Za-z]+)|0[0-9]+)(N)?")
_FLOAT_RE = re.compile(r"([-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)(M)?")
_RATIO_RE = re.compile(r"([-+]?)([0-9]+)/([0-9]+)")
_SYMBOL_RE = re.compile(r"[:]?([^0-9/].*/)?(/|[^0-9/][^/]*)", re.S)
_ESCAPE_RE = re.compile(r"\\(u[0-9a-fA-F]{4}|[0-7]{1,3}|.)", re.S)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_INST_RE = re.compile(
    r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2})(?:T([0-9]{2})(?::([0-9]{2})"
    r"(?::([0-9]{2})(?:[.]([0-9]+))?)?)?)?)?)?(?:Z|([-+])([0-9]{2}):([0-9]{2}))?")
_HEX4_RE = re.compile("[0-9a-fA-F]{4}")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

_SIMPLE_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "\\": "\\", '"': '"',
                   "b": "\b", "f": "\f"}
_CHAR_NAMES = {"newline": "\n", "space": " ", "tab": "\t", "backspace": "\b",
               "formfeed": "\f", "return": "\r"}
_SYMBOLIC = {"Inf": float("inf"), "-Inf": float("-inf"), "NaN": float("nan")}

# Frame kinds; collections first so "kind <= _NSMAP" means "append to items".
_VECTOR, _LIST, _MAP, _SET, _NSMAP, _TAG, _DISCARD, _META, _TOP = range(9)
_OPENERS = {"[": _VECTOR, "(": _LIST, "{": _MAP}
_CLOSES = {"]": (_VECTOR,), ")": (_LIST,), "}": (_MAP, _SET, _NSMAP)}
_KIND_NAMES = {_VECTOR: "vector", _LIST: "list", _MAP: "map", _SET: "set",
               _NSMAP: "namespaced map", _TAG: "tagged value",
               _DISCARD: "#_ form", _META: "^ form"}
_OPEN_TEXT = {_VECTOR: "[", _LIST: "(", _MAP: "{", _SET: "#{", _NSMAP: "#:ns{",
              _TAG: "#tag", _DISCARD: "#_", _META: "^meta"}

# What ^meta may be, and what it may annotate (Clojure's IMeta values).
_META_TYPES = frozenset([Symbol, Keyword, str, FrozenDict])
_META_TARGETS = frozenset([Symbol, Vector, List, FrozenDict, FrozenSet])

_EOF = object()
_MISSING = object()
_LONG_LIMIT = 1 << 63  # Java's long is [-2**63, 2**63): outside, Clojure reads a BigInt

# Token text -> Keyword/Symbol/constant. Bounded: a peer sending endless
# distinct keywords costs at most _TOKEN_CACHE_MAX entries here.
_CONSTANTS: Dict[str, Any] = {"nil": None, "true": True, "false": False, "/": Symbol("/")}
_TOKEN_CACHE: Dict[str, Any] = dict(_CONSTANTS)
_TOKEN_CACHE_MAX = 8192


def loads(text: "str | bytes", *, tags: Optional[Mapping[str, Callable[[Any], Any]]] = None,
          default_tag: Optional[Callable[[str, Any], Any]] = None,
          eof: Any = None, max_depth: int = MAX_DEPTH,
          max_int_digits: int = MAX_INT_DIGITS,
          max_total_int_digits: int = MAX_TOTAL_INT_DIGITS) -> Any:
    """Read the first EDN form of ``text`` (``clojure.edn/read-string``).

    ``tags`` maps a tag name (``"my/tag"``) to a function of the read value;
    it takes precedence over the built-in ``inst`` and ``uuid``. An unknown
    tag is an :class:`EDNError` unless ``default_tag(tag, value)`` is given
    (``default_tag=TaggedLiteral`` keeps it). ``eof`` is returned for text
    holding no form (empty, blank, comments, discarded forms): None, as
    ``read-string`` returns nil. ``max_depth`` bounds nesting,
    ``max_int_digits`` the digits of one integer and ``max_total_int_digits``
    those of all the big integers in ``text`` (see ``limits``).
    """
    if type(text) is not str:
        text = _as_text(text)
    value = _read(text, 0, tags, default_tag, max_depth, max_int_digits,
                  max_total_int_digits)[0]
    return eof if value is _EOF else value


def loads_all(text: "str | bytes", *,
              tags: Optional[Mapping[str, Callable[[Any], Any]]] = None,
              default_tag: Optional[Callable[[str, Any], Any]] = None,
              max_depth: int = MAX_DEPTH,
              max_int_digits: int = MAX_INT_DIGITS,
              max_total_int_digits: int = MAX_TOTAL_INT_DIGITS) -> TList[Any]:
    """Read every EDN form in ``text``, in order (``[]`` when it holds none).

    The bounds are those of :func:`loads`; ``max_total_int_digits`` is for the
    whole text, not each form."""
    if type(text) is not str:
        text = _as_text(text)
    values: TList[Any] = []
    pos = 0
    spent = [0]  # one budget for every form
    while True:
        value, pos = _read(text, pos, tags, default_tag, max_depth, max_int_digits,
                           max_total_int_digits, spent)
        if value is _EOF:
            return values
        values.append(value)


def _as_text(data: Any) -> str:
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise EDNError("EDN bytes are not UTF-8: %s" % e, e.start, None, None) from e
    if isinstance(data, str):
        return str(data)
    raise TypeError("loads needs str or UTF-8 bytes, not %s" % type(data).__name__)


def _read(text: str, pos: int, tags: Any, default_tag: Any, max_depth: int,
          max_int_digits: int, max_total_int_digits: int,
          spent: Optional[TList[int]] = None) -> Tuple[Any, int]:
    """Read one form at ``pos``: ``(value, end)``, or ``(_EOF, len)``.

    ``spent[0]`` counts the digits of big integers read so far (the list is
    made on the first one when None: most texts have none).
    """
    match = _TOKEN.match
    cache = _TOKEN_CACHE
    fast_digits = 18 if max_int_digits > 17 else max_int_digits + 1  # int() at once below
    stack: TList[Tuple[int, Any, int, Any]] = []
    kind = _TOP
    items: Any = None
    start = pos
    extra: Any = None
    v: Any
    g: Any
    while True:
        m = match(text, pos)
        if m is None:
            if kind == _TOP:
                return _EOF, len(text)
            raise EDNError.at(
                "unexpected end of input in %s opened at offset %d"
                % (_KIND_NAMES[kind], start), text, len(text))
        pos = m.end()
        g = m.lastindex
        if g == _G_NUMBER:
            tok = m.group(g)
            if len(tok) < fast_digits and tok.isdigit() and tok.isascii() and (
                    tok[0] != "0" or len(tok) == 1):
                v = int(tok)
            else:
                if spent is None:
                    spent = [0]
                v = _parse_number(tok, text, m.start(g), max_int_digits,
                                  max_total_int_digits, spent)
        elif g == _G_SYMBOL:
            tok = m.group(g)
            v = cache.get(tok, _MISSING)
            if v is _MISSING:
                v = _parse_symbolic(tok, text, m.start(g))
        elif g == _G_STRING:
            v = m.group(g)
            if "\\" in v:
                v = _unescape(v, text, m.start(g))
        elif g == _G_DELIM:
            c = m.group(g)
            opened = _OPENERS.get(c)
            if opened is not None:
                if len(stack) >= max_depth:
                    raise _too_deep(text, m.start(g), max_depth)
                stack.append((kind, items, start, extra))
                kind, items, start, extra = opened, [], m.start(g), None
                continue
            if kind not in _CLOSES[c]:
                raise _unmatched(c, kind, start, text, m.start(g))
            if kind == _VECTOR:
                v = Vector(items)
            elif kind == _MAP:
                v = _build_map(items, text, start)
            elif kind == _LIST:
                v = List(items)
            elif kind == _SET:
                v = _build_set(items, text, start)
            else:
                v = _build_map(_qualify_keys(items, extra), text, start)
            kind, items, start, extra = stack.pop()
        elif g == _G_CHAR:
            v = _parse_char(m.group(g), text, m.start(g) - 1)
        elif g == _G_DISPATCH:
            at = m.start(g)
            c = text[pos:pos + 1]
            new_extra = None
            if c == "{":
                opened, pos = _SET, pos + 1
            elif c == "_":
                opened, pos = _DISCARD, pos + 1
            elif c == "#":
                v, pos = _symbolic_value(text, pos + 1, at)
                opened = None
            elif c == ":":
                new_extra, pos = _namespaced_map_start(text, pos + 1, at)
                opened = _NSMAP
            elif c.isalpha():
                new_extra, pos = _tag_start(text, pos, at, tags, default_tag)
                opened = _TAG
            elif c == "<":
                raise EDNError.at("unreadable form #<...>", text, at)
            else:
                raise EDNError.at("no dispatch macro for #%s" % c if c else
                                  "unexpected end of input after #", text, at)
            if opened is not None:
                if len(stack) >= max_depth:
                    raise _too_deep(text, at, max_depth)
                stack.append((kind, items, start, extra))
                kind, items, start, extra = opened, [], at, new_extra
                continue
        elif g == _G_META:
            # ^meta form: Python values carry no metadata; read and drop it,
            # then the form it annotates is the value.
            if len(stack) >= max_depth:
                raise _too_deep(text, m.start(g), max_depth)
            stack.append((kind, items, start, extra))
            kind, items, start, extra = _META, None, m.start(g), None
            continue
        else:
            raise _bad_char(m.group(g), text, m.start(g))
        # A value is complete: hand it to whatever is waiting for it.
        while True:
            if kind <= _NSMAP:
                items.append(v)
                break
            if kind == _TOP:
                return v, pos
            if kind == _TAG:
                v = _apply_tag(extra, v, text)
                kind, items, start, extra = stack.pop()
                continue
            if kind == _META:
                if extra is None:  # v is the metadata: dropped; the form comes next
                    if type(v) not in _META_TYPES:
                        raise EDNError.at("metadata must be a symbol, keyword, string or map",
                                          text, start)
                    extra = True
                    break
                if type(v) not in _META_TARGETS:  # v is the form: passed on
                    raise EDNError.at("metadata can only be applied to symbols and "
                                      "collections", text, start)
                kind, items, start, extra = stack.pop()
                continue
            kind, items, start, extra = stack.pop()  # _DISCARD drops v
            break


def _parse_number(tok: str, text: str, at: int, max_int_digits: int,
                  max_total_int_digits: int, spent: TList[int]) -> Any:
    try:
        m = _INT_RE.fullmatch(tok)
        if m is not None:
            sign, zero, dec, hexa, octal, radix, radix_digits, big = m.groups()
            if zero is not None:
                return BigInt(0) if big else 0
            if dec is not None:
                base, digits = 10, dec
            elif hexa is not None:
                base, digits = 16, hexa
            elif octal is not None:
                base, digits = 8, octal
            elif radix is not None:
                base, digits = int(radix), radix_digits
                if not 2 <= base <= 36:
                    raise ValueError("radix %d out of range [2, 36]" % base)
            else:
                raise ValueError("leading zero")
            _spend(decimal_digits(len(digits), base), max_int_digits, max_total_int_digits,
                   spent, tok, text, at)
            value = int_from_digits(digits, base)
            if sign == "-":
                value = -value
            if big or not -_LONG_LIMIT <= value < _LONG_LIMIT:
                return BigInt(value)
            return value
        m = _FLOAT_RE.fullmatch(tok)
        if m is not None:  # float() and Decimal() take linear time: no limit
            if m.group(2):
                return _decimal(m.group(1))
            return float(m.group(1))
        m = _RATIO_RE.fullmatch(tok)
        if m is not None:
            sign, numerator, denominator = m.groups()
            for part in (numerator, denominator):
                # the gcd that reduces a ratio is quadratic: its parts count more
                _spend(max(len(part), len(part) * len(part) // _RATIO_DIGITS),
                       max_int_digits, max_total_int_digits, spent, tok, text, at)
            ratio = Fraction(int_from_digits(numerator), int_from_digits(denominator))
            if sign == "-":
                ratio = -ratio
            if ratio.denominator != 1:
                return ratio
            value = ratio.numerator
            return value if -_LONG_LIMIT <= value < _LONG_LIMIT else BigInt(value)
    except EDNError:
        raise
    except (ValueError, ZeroDivisionError, InvalidOperation) as e:
        raise EDNError.at("invalid number %s (%s)" % (_shown(tok), e), text, at) from None
    raise EDNError.at("invalid number %s" % _shown(tok), text, at)


_RATIO_DIGITS = 1000  # a ratio part of n digits costs n * n / 1000


def _spend(cost: int, max_int_digits: int, max_total_int_digits: int, spent: TList[int],
           tok: str, text: str, at: int) -> None:
    """Charge ``cost`` decimal digits to this call's budget (``spent[0]``), or raise."""
    if cost > max_int_digits:
        raise EDNError.at("integer %s has more than max_int_digits=%d digits (in decimal; "
                          "ratio parts count their square / %d)"
                          % (_shown(tok), max_int_digits, _RATIO_DIGITS), text, at)
    if cost > FREE_INT_DIGITS:
        spent[0] += cost
        if spent[0] > max_total_int_digits:
            raise EDNError.at("integer %s is over max_total_int_digits=%d: the big integers "
                              "of this text have more digits than that together"
                              % (_shown(tok), max_total_int_digits), text, at)


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ValueError:  # PyPy's pure-Python Decimal parses digits with int()
        mantissa, _, exponent = text.lower().partition("e")
        whole, _, fraction = mantissa.lstrip("+-").partition(".")
        digits = whole + fraction
        return Decimal((mantissa.startswith("-"), tuple(map(int, digits)),
                        int(exponent or "0") - len(fraction)))


def _shown(tok: str) -> str:
    """``tok`` for an error message: repr'd, and cut short when long."""
    if len(tok) <= _SHOWN_MAX:
        return repr(tok)
    return "%r... (%d characters)" % (tok[:_SHOWN_MAX], len(tok))


_SHOWN_MAX = 40


def _parse_symbolic(tok: str, text: str, at: int) -> Any:
    """A keyword or symbol token (Clojure's matchSymbol), cached."""
    if tok[0].isdecimal() or (tok[0] in "+-" and tok[1:2].isdecimal()):
        # a non-ASCII digit (ASCII ones make number tokens): Clojure's reader
        # takes any Unicode digit for a number's start, then finds it invalid
        raise EDNError.at("invalid number %s (digits are ASCII)" % _shown(tok), text, at)
    m = _SYMBOL_RE.fullmatch(tok)
    if m is not None:
        ns, name = m.group(1), m.group(2)
        if not ((ns is not None and ns.endswith(":/")) or name.endswith(":")
                or tok.find("::", 1) != -1 or tok.startswith("::")):
            value = Keyword(tok[1:]) if tok[0] == ":" else Symbol(tok)
            if len(_TOKEN_CACHE) >= _TOKEN_CACHE_MAX:
                _TOKEN_CACHE.clear()
                _TOKEN_CACHE.update(_CONSTANTS)
            _TOKEN_CACHE[tok] = value
            return value
    raise EDNError.at("invalid token %s" % _shown(tok), text, at)


def _unescape(body: str, text: str, at: int) -> str:
    def replace(m: "re.Match[str]") -> str:
        e = m.group(1)
        c = _SIMPLE_ESCAPES.get(e)
        if c is not None:
            return c
        if len(e) == 5:
            return chr(int(e[1:], 16))
        if "0" <= e[0] <= "7":
            code = int(e, 8)
            if code <= 0o377:
                return chr(code)
            raise EDNError.at("octal escape \\%s out of range [0, 377]" % e,
                              text, at + m.start())
        if e == "u":
            raise EDNError.at("invalid unicode escape: \\u needs 4 hex digits",
                              text, at + m.start())
        raise EDNError.at("unsupported escape character \\%s" % e, text, at + m.start())

    out = _ESCAPE_RE.sub(replace, body)
    if "\\u" in body and _SURROGATE_RE.search(out):
        # "\ud83d\ude00" is one character in Clojure (a UTF-16 pair): join pairs.
        out = out.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return out


def _parse_char(tok: str, text: str, at: int) -> Char:
    if len(tok) == 1:
        return Char(tok)
    named = _CHAR_NAMES.get(tok)
    if named is not None:
        return Char(named)
    if tok[0] == "u" and len(tok) == 5:
        if _HEX4_RE.fullmatch(tok, 1) is not None:  # int() would take "+1_2" and "٣"
            code = int(tok[1:], 16)
            if not 0xD800 <= code <= 0xDFFF:
                return Char(chr(code))
        raise EDNError.at("invalid character constant \\%s" % tok, text, at)
    if tok[0] == "o" and 2 <= len(tok) <= 4 and all("0" <= d <= "7" for d in tok[1:]):
        code = int(tok[1:], 8)
        if code <= 0o377:
            return Char(chr(code))
        raise EDNError.at("octal character \\%s out of range [0, 377]" % tok, text, at)
    raise EDNError.at("unsupported character \\%s" % tok, text, at)


def _symbolic_value(text: str, pos: int, at: int) -> Tuple[float, int]:
    m = _NAME_TOKEN.match(text, pos)
    value = _SYMBOLIC.get(m.group()) if m is not None else None
    if value is None:
        raise EDNError.at("unknown symbolic value ##%s (expected ##Inf, ##-Inf, ##NaN)"
                          % (m.group() if m else ""), text, at)
    return value, m.end()


def _namespaced_map_start(text: str, pos: int, at: int) -> Tuple[str, int]:
    m = _NAME_TOKEN.match(text, pos)
    ns = m.group() if m is not None else ""
    if not ns or ns.startswith(":") or "/" in ns or _SYMBOL_RE.fullmatch(ns) is None:
        raise EDNError.at("namespaced map must specify a valid namespace", text, at)
    pos = _SKIP_RE.match(text, m.end()).end()
    if text[pos:pos + 1] != "{":
        raise EDNError.at("namespaced map #:%s must be followed by a map" % ns, text, at)
    return ns, pos + 1


def _tag_start(text: str, pos: int, at: int, tags: Any,
               default_tag: Any) -> Tuple[Any, int]:
    m = _NAME_TOKEN.match(text, pos)
    name = m.group()
    if _SYMBOL_RE.fullmatch(name) is None or name.startswith(":"):
        raise EDNError.at("reader tag must be a symbol, got %r" % name, text, at)
    fn = tags.get(name) if tags else None
    if fn is None:
        fn = _BUILTIN_TAGS.get(name)
    if fn is None:
        if default_tag is None:
            raise EDNError.at("no reader function for tag #%s" % name, text, at)
        fn = partial(default_tag, name)
    return (fn, name, at), m.end()


def _apply_tag(tag: Tuple[Callable[[Any], Any], str, int], value: Any, text: str) -> Any:
    fn, name, at = tag
    try:
        return fn(value)
    except EDNError:
        raise
    except Exception as e:
        raise EDNError.at("#%s rejected its value: %s" % (name, e), text, at) from e


def _read_inst(value: Any) -> datetime:
    """``#inst "1985-04-12T23:20:50.52Z"`` -> an aware datetime (RFC 3339 subset)."""
    if not isinstance(value, str):
        raise ValueError("#inst needs a string")
    m = _INST_RE.fullmatch(value)
    if m is None:
        raise ValueError("not an RFC 3339 timestamp: %r" % value)
    year, month, day, hour, minute, second, frac, sign, off_h, off_m = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if sign is not None:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError("bad UTC offset in %r" % value)
        if offset:
            tz = timezone(-offset if sign == "-" else offset)
    return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                    int(minute or 0), int(second or 0), micro, tz)


def _read_uuid(value: Any) -> uuid.UUID:
    if not isinstance(value, str) or _UUID_RE.fullmatch(value) is None:
        raise ValueError("#uuid needs a string like 8-4-4-4-12 hex digits")
    return uuid.UUID(value)


_BUILTIN_TAGS = {"inst": _read_inst, "uuid": _read_uuid}


def _build_map(items: list, text: str, at: int) -> FrozenDict:
    if len(items) & 1:
        raise EDNError.at("map literal must contain an even number of forms", text, at)
    try:
        result = FrozenDict._from_flat(items)
    except TypeError as e:
        raise EDNError.at("unhashable map key: %s" % e, text, at) from None
    if len(result) * 2 != len(items):
        raise EDNError.at("duplicate key: %s" % _first_duplicate(items[0::2]), text, at)
    return result


def _build_set(items: list, text: str, at: int) -> FrozenSet:
    try:
        result = FrozenSet._from_list(items)
    except TypeError as e:
        raise EDNError.at("unhashable set member: %s" % e, text, at) from None
    if len(result) != len(items):
        raise EDNError.at("duplicate set member: %s" % _first_duplicate(items), text, at)
    return result


def _first_duplicate(values: list) -> str:
    seen = set()
    for v in values:
        k = edn_key(v)
        if k in seen:
            try:
                return dumps(v)
            except (TypeError, ValueError):
                return repr(v)
        seen.add(k)
    return "?"


def _qualify_keys(items: list, ns: str) -> list:
    """``#:ns{:a 1 :_/b 2}`` -> ``{:ns/a 1 :b 2}`` (keywords and symbols)."""
    out = list(items)
    for i in range(0, len(out), 2):
        key = out[i]
        if isinstance(key, (Keyword, Symbol)):
            if key.namespace is None:
                out[i] = type(key)(key.name, ns)
            elif key.namespace == "_":
                out[i] = type(key)(key.name)
    return out


def _too_deep(text: str, at: int, max_depth: int) -> EDNError:
    return EDNError.at("nesting deeper than max_depth=%d" % max_depth, text, at)


def _unmatched(c: str, kind: int, start: int, text: str, at: int) -> EDNError:
    if kind == _TOP:
        return EDNError.at("unmatched delimiter %s" % c, text, at)
    if kind in (_TAG, _DISCARD, _META):
        return EDNError.at("%s needs a form before %s" % (_OPEN_TEXT[kind], c), text, at)
    return EDNError.at("unmatched delimiter %s: the %s opened at offset %d is still open"
                       % (c, _OPEN_TEXT[kind], start), text, at)


def _bad_char(c: str, text: str, at: int) -> EDNError:
    if c == '"':
        return EDNError.at("unexpected end of input in string", text, at)
    if c == "\\":
        return EDNError.at("unexpected end of input in character", text, at)
    return EDNError.at("unexpected character %r" % c, text, at)
