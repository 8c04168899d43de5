"""Transducer-like stages for :func:`twisted_aleph.stream.transform`.

A stage is a function from a reducer to a reducer, as in Clojure: applying it
creates fresh state, so one stage value can serve many streams. A reducer has
``step(acc, x) -> acc`` (or :class:`Reduced` to stop early) and
``complete(acc) -> acc``. Stages compose with :func:`comp`, left to right in
data order: ``comp(drop(1), take(3))`` drops one message, then takes three.
"""

from __future__ import annotations

import builtins
from typing import Any, Callable, List

_NONE = object()


class Reduced:
    """Wraps an accumulator to say: stop, nothing more is wanted."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Reducer:
    """Base reducer: passes to ``rf``; subclasses override step/complete."""

    __slots__ = ("rf",)

    def __init__(self, rf: "Reducer") -> None:
        self.rf = rf

    def step(self, acc: Any, x: Any) -> Any:
        return self.rf.step(acc, x)

    def complete(self, acc: Any) -> Any:
        return self.rf.complete(acc)


Stage = Callable[[Reducer], Reducer]


class Appender(Reducer):
    """The terminal reducer: appends to a list accumulator."""

    __slots__ = ()

    def __init__(self) -> None:
        pass

    def step(self, acc: List[Any], x: Any) -> Any:
        acc.append(x)
        return acc

    def complete(self, acc: Any) -> Any:
        return acc


def comp(*stages: Stage) -> Stage:
    """Compose stages; data flows through them left to right."""
    def composed(rf: Reducer) -> Reducer:
        for stage in reversed(stages):
            rf = stage(rf)
        return rf
    return composed


def _stage(cls: type, *args: Any) -> Stage:
    return lambda rf: cls(rf, *args)


class _Map(Reducer):
    __slots__ = ("f",)

    def __init__(self, rf: Reducer, f: Callable[[Any], Any]) -> None:
        super().__init__(rf)
        self.f = f

    def step(self, acc: Any, x: Any) -> Any:
        return self.rf.step(acc, self.f(x))


def map(f: Callable[[Any], Any]) -> Stage:  # noqa: A001 - mirrors clojure.core/map
    """Apply ``f`` to each message."""
    return _stage(_Map, f)


class _Filter(_Map):
    __slots__ = ()

    def step(self, acc: Any, x: Any) -> Any:
        return self.rf.step(acc, x) if self.f(x) else acc


def filter(pred: Callable[[Any], Any]) -> Stage:  # noqa: A001
    """Keep the messages for which ``pred`` is true."""
    return _stage(_Filter, pred)


class _Mapcat(_Map):
    __slots__ = ()

    def step(self, acc: Any, x: Any) -> Any:
        for y in self.f(x):
            acc = self.rf.step(acc, y)
            if isinstance(acc, Reduced):
                return acc
        return acc


def mapcat(f: Callable[[Any], Any]) -> Stage:
    """Replace each message by the items of ``f(msg)``, in order."""
    return _stage(_Mapcat, f)


class _Take(Reducer):
    __slots__ = ("left",)

    def __init__(self, rf: Reducer, n: int) -> None:
        super().__init__(rf)
        self.left = n

    def step(self, acc: Any, x: Any) -> Any:
        if self.left <= 0:
            return Reduced(acc)
        self.left -= 1
        acc = self.rf.step(acc, x)
        if self.left <= 0 and not isinstance(acc, Reduced):
            return Reduced(acc)
        return acc


def take(n: int) -> Stage:
    """The first ``n`` messages, then the stream is closed."""
    return _stage(_Take, n)


class _Drop(_Take):
    __slots__ = ()

    def step(self, acc: Any, x: Any) -> Any:
        if self.left > 0:
            self.left -= 1
            return acc
        return self.rf.step(acc, x)


def drop(n: int) -> Stage:
    """Skip the first ``n`` messages."""
    return _stage(_Drop, n)


class _TakeWhile(_Map):
    __slots__ = ()

    def step(self, acc: Any, x: Any) -> Any:
        if self.f(x):
            return self.rf.step(acc, x)
        return Reduced(acc)


def take_while(pred: Callable[[Any], Any]) -> Stage:
    """Messages while ``pred`` holds; the first that fails ends the stream."""
    return _stage(_TakeWhile, pred)


class _DropWhile(Reducer):
    __slots__ = ("pred", "dropping")

    def __init__(self, rf: Reducer, pred: Callable[[Any], Any]) -> None:
        super().__init__(rf)
        self.pred = pred
        self.dropping = True

    def step(self, acc: Any, x: Any) -> Any:
        if self.dropping and self.pred(x):
            return acc
        self.dropping = False
        return self.rf.step(acc, x)


def drop_while(pred: Callable[[Any], Any]) -> Stage:
    """Skip messages while ``pred`` holds, then pass everything."""
    return _stage(_DropWhile, pred)


class _PartitionAll(Reducer):
    __slots__ = ("n", "chunk", "keep_partial")

    def __init__(self, rf: Reducer, n: int, keep_partial: bool) -> None:
        if n <= 0:
            raise ValueError("partition size must be positive")
        super().__init__(rf)
        self.n = n
        self.chunk: List[Any] = []
        self.keep_partial = keep_partial

    def step(self, acc: Any, x: Any) -> Any:
        self.chunk.append(x)
        if len(self.chunk) == self.n:
            chunk, self.chunk = tuple(self.chunk), []
            return self.rf.step(acc, chunk)
        return acc

    def complete(self, acc: Any) -> Any:
        if self.chunk and self.keep_partial:
            chunk, self.chunk = tuple(self.chunk), []
            acc = self.rf.step(acc, chunk)
            if isinstance(acc, Reduced):
                acc = acc.value
        return self.rf.complete(acc)


def partition(n: int) -> Stage:
    """Tuples of ``n`` messages; an incomplete last tuple is dropped."""
    return lambda rf: _PartitionAll(rf, n, False)


def partition_all(n: int) -> Stage:
    """Tuples of ``n`` messages; the last may be shorter."""
    return lambda rf: _PartitionAll(rf, n, True)


class _PartitionBy(Reducer):
    __slots__ = ("f", "chunk", "key")

    def __init__(self, rf: Reducer, f: Callable[[Any], Any]) -> None:
        super().__init__(rf)
        self.f = f
        self.chunk: List[Any] = []
        self.key: Any = _NONE

    def step(self, acc: Any, x: Any) -> Any:
        k = self.f(x)
        if self.chunk and k != self.key:
            chunk, self.chunk = tuple(self.chunk), []
            acc = self.rf.step(acc, chunk)
            if isinstance(acc, Reduced):
                return acc
        self.key = k
        self.chunk.append(x)
        return acc

    def complete(self, acc: Any) -> Any:
        if self.chunk:
            chunk, self.chunk = tuple(self.chunk), []
            acc = self.rf.step(acc, chunk)
            if isinstance(acc, Reduced):
                acc = acc.value
        return self.rf.complete(acc)


def partition_by(f: Callable[[Any], Any]) -> Stage:
    """Lists of consecutive messages with the same ``f(msg)``."""
    return _stage(_PartitionBy, f)


class _Dedupe(Reducer):
    __slots__ = ("last",)

    def __init__(self, rf: Reducer) -> None:
        super().__init__(rf)
        self.last: Any = _NONE

    def step(self, acc: Any, x: Any) -> Any:
        if self.last is not _NONE and x == self.last:
            return acc
        self.last = x
        return self.rf.step(acc, x)


def dedupe() -> Stage:
    """Drop consecutive duplicates."""
    return _Dedupe


def run(stage: Stage, xs: Any) -> List[Any]:
    """Apply a stage to an iterable eagerly (Clojure's ``into []``)."""
    rf = stage(Appender())
    acc: Any = []
    for x in xs:
        acc = rf.step(acc, x)
        if isinstance(acc, Reduced):
            acc = acc.value
            break
    return builtins.list(rf.complete(acc))
