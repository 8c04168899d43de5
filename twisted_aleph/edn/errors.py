"""EDNError: bad EDN text, with where it went wrong, or a value EDN cannot hold."""

from __future__ import annotations

from typing import Optional

__all__ = ["EDNError", "EDNTypeError"]


class EDNError(ValueError):
    """Text that is not EDN (or a value EDN cannot hold).

    ``position`` is the 0-based character offset in the text, ``line`` and
    ``column`` are 1-based; all three are None when there is no text.
    """

    def __init__(self, message: str, position: Optional[int] = None,
                 line: Optional[int] = None, column: Optional[int] = None):
        self.message = message
        self.position = position
        self.line = line
        self.column = column
        if position is None:
            ValueError.__init__(self, message)
        elif line is None or column is None:
            ValueError.__init__(self, "%s at offset %d" % (message, position))
        else:
            ValueError.__init__(self, "%s at line %d, column %d (offset %d)"
                                % (message, line, column, position))

    @classmethod
    def at(cls, message: str, text: str, position: int) -> "EDNError":
        """An error at ``position`` of ``text``, with its line and column."""
        position = min(max(position, 0), len(text))
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        return cls(message, position, line, column)


class EDNTypeError(EDNError, TypeError):
    """A value ``dumps`` cannot write because EDN has no form for its type.

    Both an :class:`EDNError` (every ``dumps`` failure is one) and a
    ``TypeError`` (what Python raises for a wrong type, as ``json`` does).
    """
