"""The bounds ``loads`` and ``dumps`` keep by default, and why.

Each is a keyword argument of the calls that use it; these are the defaults.
A peer's EDN text is read by the reactor thread, so each bound says how much
one message can cost, in nesting, digits or time.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "MAX_TOTAL_INT_DIGITS", "FREE_INT_DIGITS"]

#: Deepest nesting of collections and tags (``#inst``, ``#uuid``, ``#my/tag``
#: each count one level) that ``loads`` reads and ``dumps`` writes. Clojure
#: 1.11 reads and prints about 1,000 levels (its reader and printer recurse
#: on the JVM stack); one depth both ways means the project never writes what
#: it cannot read back. Reading and writing loop over explicit stacks, and
#: the read collections compare, hash and repr without recursion, so values
#: at this depth are usable under Python's default recursion limit.
MAX_DEPTH = 1000

#: Most digits one integer (or one part of a ratio) may have for ``loads``,
#: counted in decimal digits: a number written in another base counts the
#: decimal digits it would need (``36rZZZ``'s 3 digits count 5), since both
#: reading it and writing it back cost what its decimal size costs (about
#: n**1.6: 100,000 digits take ~35 ms to read and as long to write back on
#: CPython, ~8 and ~18 ms on PyPy, on a 2-core test machine). A ratio's parts
#: are reduced by a gcd, which is quadratic: a part of n digits counts
#: n * n / 1,000 (so at most 10,000 digits by default).
MAX_INT_DIGITS = 100_000

#: Most digits all the big integers of one ``loads`` call may have together
#: (counted as for :data:`MAX_INT_DIGITS`): a message full of numbers just
#: under the limit costs no more than one at the limit, a few tens of ms.
MAX_TOTAL_INT_DIGITS = 100_000

#: Integers of up to this many (decimal) digits do not count toward
#: :data:`MAX_TOTAL_INT_DIGITS`: Python converts them natively, at a cost per
#: digit no higher than what other EDN text costs per character to read.
FREE_INT_DIGITS = 4000
