"""Manifold's ``manifold.deferred`` over plain Twisted Deferreds.

There is no wrapper class: a :class:`twisted.internet.defer.Deferred` is the
deferred. These functions add Manifold's vocabulary on top: ``chain``,
``catch``, ``zip``, ``alt``, ``timeout`` (``timeout!``), ``future`` and
``loop``/``recur``. Manifold's ``let-flow`` is ``async def`` run with
``defer.ensureDeferred``: awaiting a Deferred is the flow.

Every function accepts, wherever a deferred is expected, a Deferred, a
coroutine or a plain value.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type, Union

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class _Nothing:
    __slots__ = ()


NOTHING: Any = _Nothing()

Step = Union[Callable[[Any], Any], str]


def to_deferred(x: Any) -> Deferred:
    """Coerce a Deferred, coroutine or plain value into a Deferred."""
    if isinstance(x, Deferred):
        return x
    if inspect.iscoroutine(x):
        return defer.ensureDeferred(x)
    if inspect.isawaitable(x):
        return defer.ensureDeferred(_await(x))
    return defer.succeed(x)


async def _await(x: Any) -> Any:
    """A coroutine awaiting any awaitable, so ensureDeferred can run it."""
    return await x


def _unwrap(result: Any) -> Any:
    """A step's return value, with coroutines made into Deferreds."""
    if inspect.iscoroutine(result):
        return defer.ensureDeferred(result)
    return result


def _step(fn: Step) -> Callable[[Any], Any]:
    if isinstance(fn, str):
        key = fn
        return lambda value: value[key]
    return lambda value: _unwrap(fn(value))


def chain(x: Any, *fns: Step) -> Deferred:
    """Apply ``fns`` in turn to the value of ``x``, waiting on each result.

    A step may return a value, a Deferred or a coroutine. A string step looks
    the key up, as Clojure's keyword-as-function: ``chain(d, "body", to_string)``.
    """
    d = to_deferred(x)
    for fn in fns:
        d.addCallback(_step(fn))
    return d


def catch(x: Any, fn: Callable[[BaseException], Any],
          *error_types: Type[BaseException]) -> Deferred:
    """Recover from an error in ``x`` with ``fn(exception)``.

    Only ``error_types`` are caught (default: any Exception); others pass on.
    """
    types: Tuple[Type[BaseException], ...] = error_types or (Exception,)

    def handle(failure: Failure) -> Any:
        failure.trap(*types)
        error = failure.value
        assert error is not None  # trap() passed: there is an exception
        return _unwrap(fn(error))

    return to_deferred(x).addErrback(handle)


def zip(*xs: Any) -> Deferred:  # noqa: A001 - Manifold's name
    """Deferred of a list of every value; fails with the first error."""
    ds = [to_deferred(x) for x in xs]
    if not ds:
        return defer.succeed([])
    return defer.gatherResults(ds, consumeErrors=True).addErrback(
        lambda f: f.value.subFailure if isinstance(f.value, defer.FirstError) else f)


def alt(*xs: Any) -> Deferred:
    """Deferred of whichever of ``xs`` is realized first, value or error.

    The others are left running. Their values pass through untouched, for
    whoever else holds those Deferreds; their errors are consumed here so
    none goes unhandled.
    """
    out: Deferred = Deferred()

    def first(result: Any) -> Any:
        if not out.called:
            out.callback(result) if not isinstance(result, Failure) else out.errback(result)
        return None if isinstance(result, Failure) else result

    for x in xs:
        to_deferred(x).addBoth(first)
    return out


def timeout(d: Deferred, seconds: float, *, value: Any = NOTHING,
            clock: Any = None) -> Deferred:
    """Manifold's ``timeout!``: realize ``d`` itself if still pending after
    ``seconds``, with ``value`` when given, else with a ``TimeoutError``.

    Returns ``d`` (a coroutine is first made a Deferred, which is returned).
    ``clock`` is any IReactorTime (``task.Clock`` in tests).
    """
    d = to_deferred(d)
    if d.called:
        return d
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    # Module-level callbacks with their arguments, not closures: a server may
    # hold thousands of these at once, and each closure is more objects for
    # the garbage collector to walk.
    call = clock.callLater(seconds, _expire, d, seconds, value)
    d.addBoth(cancel_call, call)
    return d


def _expire(d: Deferred, seconds: float, value: Any) -> None:
    if d.called:
        return
    if value is NOTHING:
        d.errback(TimeoutError(f"timed out after {seconds} s"))
    else:
        d.callback(value)


def cancel_call(result: Any, call: Any) -> Any:
    """Deferred callback: cancel the DelayedCall ``call`` if still pending,
    pass ``result`` on (``d.addBoth(cancel_call, call)``)."""
    if call.active():
        call.cancel()
    return result


def future(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
    """Run blocking ``fn(*args, **kwargs)`` in the reactor's thread pool."""
    return threads.deferToThread(fn, *args, **kwargs)


class Recur:
    """The value of ``recur(...)``: start the loop body again with new args."""

    __slots__ = ("args",)

    def __init__(self, args: Sequence[Any]) -> None:
        self.args = args


def recur(*args: Any) -> Recur:
    """Inside a ``loop`` body: go round again with these arguments."""
    return Recur(args)


class _Trampoline:
    """Runs a loop body; synchronous rounds iterate, asynchronous ones resume
    from the Deferred's callback on a fresh stack."""

    __slots__ = ("fn", "result", "in_loop", "next_args")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.result: Deferred = Deferred()
        self.in_loop = False
        self.next_args: Optional[Sequence[Any]] = None

    def run(self, args: Sequence[Any]) -> None:
        while True:
            try:
                r = _unwrap(self.fn(*args))
            except BaseException:
                self.result.errback()
                return
            if isinstance(r, Recur):
                args = r.args
                continue
            if not isinstance(r, Deferred):
                self.result.callback(r)
                return
            self.in_loop = True
            self.next_args = None
            r.addCallbacks(self._resume, self.result.errback)
            self.in_loop = False
            if self.next_args is None:
                return
            args, self.next_args = self.next_args, None

    def _resume(self, value: Any) -> None:
        if isinstance(value, Recur):
            if self.in_loop:
                self.next_args = value.args
            else:
                self.run(value.args)
        else:
            self.result.callback(value)


def loop(fn: Callable[..., Any], *initial: Any) -> Deferred:
    """Manifold's ``loop``: call ``fn(*initial)``; while it returns (or its
    Deferred yields) ``recur(*args)``, call it again with those args. The
    Deferred fires with the first other value. The stack never grows, however
    many rounds complete synchronously."""
    t = _Trampoline(fn)
    t.run(initial)
    return t.result


def realized(d: Deferred) -> bool:
    """Whether ``d`` has a result now (Manifold's ``realized?``)."""
    return bool(d.called) and not isinstance(getattr(d, "result", None), Deferred)


__all__: List[str] = [
    "NOTHING", "to_deferred", "chain", "catch", "zip", "alt", "timeout",
    "future", "loop", "recur", "Recur", "realized", "cancel_call",
]
