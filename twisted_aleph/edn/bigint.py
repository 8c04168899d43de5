"""Integers of any size to and from digits, past Python's 4,300-digit limit.

CPython 3.11 and PyPy 3.9 refuse ``int(text)`` and ``str(number)`` beyond
``sys.get_int_max_str_digits()`` digits (4,300 by default) because their
conversions are quadratic. EDN (like Clojure) has integers of any size, so
these split the work: both convert chunks of at most :data:`CHUNK` digits
natively and join them at powers of the base that are ``CHUNK`` times a power
of two, so each call computes O(log n) powers and keeps none. Reading costs
a few multiplications (Karatsuba: about n**1.6); writing costs divisions
(quadratic on CPython, ~0.1 s for 100,000 digits), like ``str()`` itself.
Neither touches the process-wide limit.
"""

from __future__ import annotations

from typing import List

__all__ = ["CHUNK", "int_from_digits", "int_to_decimal"]

#: Digits converted natively at a time: under the default limit of 4,300.
CHUNK = 4000

_BITS_PER_DIGIT = 3.3219280948873626  # log2(10)


def int_from_digits(digits: str, base: int = 10) -> int:
    """The non-negative integer written by ``digits`` in ``base`` (2..36).

    ``ValueError`` for a character that is not a digit of ``base``, as ``int``.
    """
    if len(digits) <= CHUNK:
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
    """``str(number)`` for an int of any size."""
    if number < 0:
        return "-" + int_to_decimal(-number)
    most_digits = int(number.bit_length() / _BITS_PER_DIGIT) + 1
    if most_digits <= CHUNK:
        return int.__repr__(number)
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
