"""Integers of any size to and from digits, past Python's 4,300-digit limit.

CPython 3.11 and PyPy 3.9 refuse ``int(text)`` and ``str(number)`` beyond
``sys.get_int_max_str_digits()`` digits (4,300 by default) in bases that are
not powers of two, because their conversions are quadratic. EDN (like
Clojure) has integers of any size, so these split the work, hand-written
because the standard library's own fast conversions (``_pylong``) only
arrived with CPython 3.12 and are not in PyPy:

* reading converts chunks of at most :data:`CHUNK` digits natively and joins
  them with multiplications by powers of the base (Karatsuba: about n**1.6),
  computing O(log n) powers per call and keeping none; bases that are powers
  of two convert natively in linear time (they have no limit);
* writing splits the number with divisions by powers of ten down to chunks
  written natively. Division is quadratic, so past :data:`FAST_WRITE_DIGITS`
  digits CPython instead builds the decimal value with the C ``decimal``
  module, multiplying by powers of two (libmpdec's number-theoretic
  transform makes that about n log n per level): 100,000 digits take about
  as long to write as to read. PyPy has no C ``decimal``; its divisions are
  quick enough that writing costs about twice reading.

:func:`decimal_digits` says how many decimal digits a number written with
``n`` digits in a base may have: the unit of the reader's work budget, since
both reading and writing back cost what the decimal size costs.

Nothing here touches the process-wide digit limit.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

__all__ = ["CHUNK", "FAST_WRITE_DIGITS", "decimal_digits", "int_from_digits", "int_to_decimal"]

#: Digits converted natively at a time: under the default limit of 4,300.
CHUNK = 4000

#: Past this many digits, CPython writes through the C ``decimal`` module.
FAST_WRITE_DIGITS = 30_000

_BITS_PER_DIGIT = 3.3219280948873626  # log2(10)
_POWER_OF_TWO_BASES = frozenset([2, 4, 8, 16, 32])
_LOG10 = {base: math.log10(base) for base in range(2, 37)}

_DECIMAL: Any
try:  # CPython's C decimal (libmpdec); PyPy's pure-Python one would be slower
    import _decimal as _DECIMAL
except ImportError:  # pragma: no cover - PyPy
    _DECIMAL = None


def decimal_digits(count: int, base: int = 10) -> int:
    """Most decimal digits of a number written with ``count`` digits in ``base``."""
    if base == 10:
        return count
    return math.ceil(count * _LOG10[base])


def int_from_digits(digits: str, base: int = 10) -> int:
    """The non-negative integer written by ``digits`` in ``base`` (2..36).

    ``ValueError`` for a character that is not a digit of ``base``, as ``int``.
    """
    if len(digits) <= CHUNK or base in _POWER_OF_TWO_BASES:
        return int(digits, base)
    powers = [base ** CHUNK]
    while CHUNK << len(powers) < len(digits):
        powers.append(powers[-1] * powers[-1])
    return _join(digits, base, powers, len(powers) - 1)


def _join(digits: str, base: int, powers: List[int], level: int) -> int:
    # digits has at most CHUNK << (level + 1) characters.
    while level >= 0 and len(digits) <= CHUNK << level:
        level -= 1
    if level < 0:
        return int(digits, base)
    width = CHUNK << level
    high = _join(digits[:-width], base, powers, level - 1)
    return high * powers[level] + _join(digits[-width:], base, powers, level - 1)


def int_to_decimal(number: int) -> str:
    """``str(number)`` for an int of any size (and any int subclass)."""
    if number < 0:
        return "-" + int_to_decimal(-number)
    most_digits = int(number.bit_length() / _BITS_PER_DIGIT) + 1
    if most_digits <= CHUNK:
        return int.__repr__(number)
    if most_digits > FAST_WRITE_DIGITS and _DECIMAL is not None:
        return _via_decimal(int(number))
    powers = [10 ** CHUNK]
    while CHUNK << len(powers) < most_digits:
        powers.append(powers[-1] * powers[-1])
    parts: List[str] = []
    _split(int(number), powers, len(powers) - 1, 0, parts)
    return "".join(parts)


def _split(number: int, powers: List[int], level: int, pad: int, parts: List[str]) -> None:
    # Appends the digits of number (< 10 ** (CHUNK << (level + 1))), zero-padded
    # on the left to pad digits.
    if level < 0:
        text = int.__repr__(number)
        parts.append(text.zfill(pad) if pad else text)
        return
    high, low = divmod(number, powers[level])
    width = CHUNK << level
    if high or pad:
        _split(high, powers, level - 1, max(pad - width, 0), parts)
        _split(low, powers, level - 1, width, parts)
    else:
        _split(low, powers, level - 1, 0, parts)


_LEAF_BITS = 1024  # Decimal(int) converts this many bits natively, quickly


def _via_decimal(number: int) -> str:
    """Decimal digits of a non-negative int, built with the C ``decimal`` module.

    The number is cut in binary halves (shifts: linear) down to leaves of
    :data:`_LEAF_BITS`, and rebuilt as ``low + high * 2**k`` in decimal
    arithmetic, exact at unlimited precision (the method of CPython 3.12's
    ``_pylong``). ``2**k`` for the few ``k`` needed are computed once per call.
    """
    D = _DECIMAL.Decimal
    context = _DECIMAL.Context(prec=_DECIMAL.MAX_PREC, Emax=_DECIMAL.MAX_EMAX,
                               Emin=_DECIMAL.MIN_EMIN, traps=[_DECIMAL.Inexact])
    multiply = context.multiply
    add = context.add
    powers: Dict[int, Any] = {}

    def power_of_two(bits: int) -> Any:
        found: Optional[Any] = powers.get(bits)
        if found is None:
            if bits <= _LEAF_BITS:
                found = D(1 << bits)
            elif bits - 1 in powers:
                found = add(powers[bits - 1], powers[bits - 1])
            else:
                half = bits >> 1
                found = multiply(power_of_two(half), power_of_two(bits - half))
            powers[bits] = found
        return found

    def build(n: int, bits: int) -> Any:
        if bits <= _LEAF_BITS:
            return D(n)
        half = bits >> 1
        high = n >> half
        low = n - (high << half)
        return add(build(low, half), multiply(build(high, bits - half), power_of_two(half)))

    return str(build(number, number.bit_length()))
