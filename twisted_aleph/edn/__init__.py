"""EDN for twisted_aleph: Clojure's ``pr-str`` and ``clojure.edn/read-string``.

``dumps(value) -> str`` and ``loads(text)`` speak all of EDN and agree with
Clojure 1.11 both ways (tests/test_edn_clojure.py checks it against a JVM).

What reads into what: nil -> None, booleans, integers (``1N`` too) -> int,
floats -> float (``##Inf``, ``##NaN``), ``1.5M`` -> Decimal, ``1/2`` ->
Fraction, strings -> str, ``\a`` -> Char (a str subclass never equal to a
str), ``:k`` -> Keyword, ``s`` -> Symbol, ``(..)`` -> List, ``[..]`` ->
Vector (both tuple subclasses), ``{..}`` -> FrozenDict, ``#{..}`` ->
FrozenSet, ``#inst`` -> aware datetime, ``#uuid`` -> UUID, other tags -> the
``tags``/``default_tag`` functions. Read collections are immutable, hashable
and keep EDN's equality, so ``{1 :a, true :b, 1.0 :c}`` has three keys and
``#{0 false}`` two members: how is explained in ``types``.

Decisions: ``loads`` reads the first form and ignores the rest, like
``read-string`` (``loads_all`` reads them all); text with no form raises
unless ``eof=`` is given (Clojure returns nil); nesting deeper than
``MAX_DEPTH`` (100, ``max_depth=`` to change) is an EDNError, because
Python's own ``==``/``hash``/``repr`` of deeper values recurse; ``dumps`` has
no depth limit. Integers have any size both ways (past Python's 4,300-digit
``str``/``int`` limit, without changing it); ``loads`` refuses a number of
more than ``MAX_INT_DIGITS`` (100,000, ``max_int_digits=`` to change) digits
with an EDNError, since reading one costs more than linear time. Duplicate
map keys or set members are an EDNError, as in Clojure. The reader lives in
``reader``, the writer in ``writer``.
"""

from __future__ import annotations

from twisted_aleph.edn.errors import EDNError
from twisted_aleph.edn.reader import MAX_DEPTH, MAX_INT_DIGITS, loads, loads_all
from twisted_aleph.edn.types import (
    Char, FrozenDict, FrozenSet, Keyword, List, Symbol, TaggedLiteral, Vector,
    edn_equal, edn_key,
)
from twisted_aleph.edn.writer import dumps

__all__ = [
    "dumps", "loads", "loads_all", "EDNError", "MAX_DEPTH", "MAX_INT_DIGITS", "Keyword",
    "Symbol", "Char", "Vector", "List", "FrozenDict", "FrozenSet", "TaggedLiteral",
    "edn_equal", "edn_key",
]
