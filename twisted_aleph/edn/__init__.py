"""EDN for twisted_aleph: Clojure's ``pr-str`` and ``clojure.edn/read-string``.

``dumps(value) -> str`` and ``loads(text)`` speak all of EDN and agree with
Clojure 1.11 both ways, types included (tests/test_edn_clojure.py checks it
against a JVM, tests/test_edn_peer.py over TCP).

What reads into what: nil -> None, booleans, integers -> int (``1N`` and
integers outside Java's long range -> BigInt, an int subclass written back
with ``N``, as Clojure's BigInt), floats -> float (``##Inf``, ``##NaN``),
``1.5M`` -> Decimal, ``1/2`` -> Fraction, strings -> str, ``\\a`` -> Char (a
str subclass never equal to a str), ``:k`` -> Keyword, ``s`` -> Symbol,
``(..)`` -> List, ``[..]`` -> Vector (both tuple subclasses), ``{..}`` ->
FrozenDict, ``#{..}`` -> FrozenSet, ``#inst`` -> aware datetime, ``#uuid`` ->
UUID, other tags -> the ``tags``/``default_tag`` functions. Read collections
are immutable, hashable and keep EDN's equality, so ``{1 :a, true :b, 1.0
:c}`` has three keys and ``#{0 false}`` two members: how is explained in
``types``.

Decisions: ``loads`` reads the first form and ignores the rest, like
``read-string`` (``loads_all`` reads them all); text with no form (empty,
blank, comments only, ``#_ 1``) is None, as ``read-string``'s nil. One
depth bounds both ways: ``MAX_DEPTH`` (1,000 levels, what Clojure reads and
prints; ``max_depth=`` on ``loads`` and ``dumps``), so the project never
writes what it cannot read back; neither recurses, nor do ``==``/``hash``/
``repr`` of read values. Integers have any size both ways (past Python's
4,300-digit ``str``/``int`` limit, without changing it); since big ones cost
more than linear time, ``loads`` bounds the digits of one
(``MAX_INT_DIGITS``) and of all in one call (``MAX_TOTAL_INT_DIGITS``),
counted as decimal digits (``limits`` has the details). Duplicate map keys
or set members are an EDNError, as in Clojure. ``dumps`` raises an EDNError
(EDNTypeError, also a TypeError, for an unknown type) for any value it
cannot write, before returning anything, a string with a lone surrogate
included. The reader lives in ``reader``, the writer in ``writer``.
"""

from __future__ import annotations

from twisted_aleph.edn.errors import EDNError, EDNTypeError
from twisted_aleph.edn.limits import MAX_DEPTH, MAX_INT_DIGITS, MAX_TOTAL_INT_DIGITS
from twisted_aleph.edn.reader import loads, loads_all
from twisted_aleph.edn.types import (
    BigInt, Char, FrozenDict, FrozenSet, Keyword, List, Symbol, TaggedLiteral, Vector,
    edn_equal, edn_key,
)
from twisted_aleph.edn.writer import dumps

__all__ = [
    "dumps", "loads", "loads_all", "EDNError", "EDNTypeError", "MAX_DEPTH", "MAX_INT_DIGITS",
    "MAX_TOTAL_INT_DIGITS", "Keyword", "Symbol", "Char", "BigInt", "Vector", "List",
    "FrozenDict", "FrozenSet", "TaggedLiteral", "edn_equal", "edn_key",
]
