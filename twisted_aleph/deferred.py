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

import functools
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


def _branch(x: Any) -> Deferred:
    """A new Deferred with the outcome of ``x``, leaving ``x`` alone.

    Manifold's ``chain``/``catch`` return a new deferred and never change
    ``x``: ``status = chain(resp, "status"); body = chain(resp, "body")``
    must both see ``resp``'s value. A plain value or coroutine gives a fresh
    Deferred nobody else holds, used as is. Cancelling the branch cancels
    ``x`` (as cancelling ``x`` itself did when the same object was returned).

    A failure of ``x`` is delivered to the branch, which then carries it, so
    ``x`` does not also report it as an "Unhandled error in Deferred":

    - ``x`` already realized: its result is copied and ``x`` keeps it; the
      failure is marked handled on ``x`` the way Twisted's own ``await`` of a
      failed Deferred does.
    - ``x`` still pending: callbacks added to ``x`` before it fails (other
      branches, the owner's errbacks) still get the failure; the last one of
      ours returns None, so a callback added to ``x`` only after it failed
      sees None. Use the branch for the error, not ``x``.
    """
    d = to_deferred(x)
    if d is not x:
        return d
    if realized(d) and not getattr(d, "_runningCallbacks", False):
        # (Branched from inside one of d's callbacks, the result is not
        # final yet: wait for it like for a pending d.)
        result = d.result
        if isinstance(result, Failure):
            info = getattr(d, "_debugInfo", None)
            if info is not None:
                info.failResult = None  # handled: the branch carries it
            return defer.fail(result)
        return defer.succeed(result)
    out: Deferred = Deferred(functools.partial(_cancel_source, d))
    d.addBoth(_fire_branch, out, d)
    return out


def _cancel_source(source: Deferred, branch: Deferred) -> None:
    """Canceller of a branch: cancel the Deferred it was branched off."""
    source.cancel()


def _fire_branch(result: Any, out: Deferred, source: Deferred) -> Any:
    """Callback on ``source``: give ``out`` the result, pass it on unchanged.

    A failure is passed on only while ``source`` has later callbacks waiting
    for it; otherwise it is consumed (None), since ``out`` carries it. ``out``
    may already be realized (cancelled, or by ``timeout``): it is left alone.
    """
    if not out.called:
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
    if isinstance(result, Failure) and not getattr(source, "_callbacks", None):
        return None
    return result


def chain(x: Any, *fns: Step) -> Deferred:
    """Apply ``fns`` in turn to the value of ``x``, waiting on each result.

    A step may return a value, a Deferred or a coroutine. A string step looks
    the key up, as Clojure's keyword-as-function: ``chain(d, "body", to_string)``.
    Returns a new Deferred; a Deferred ``x`` keeps its own result (see
    :func:`_branch`), so several chains may start from the same ``x``.
    """
    d = _branch(x)
    for fn in fns:
        d.addCallback(_step(fn))
    return d


def catch(x: Any, fn: Callable[[BaseException], Any],
          *error_types: Type[BaseException]) -> Deferred:
    """Recover from an error in ``x`` with ``fn(exception)``.

    Only ``error_types`` are caught (default: any Exception); others pass on.
    Returns a new Deferred; a Deferred ``x`` keeps its own result.
    """
    types: Tuple[Type[BaseException], ...] = error_types or (Exception,)

    def handle(failure: Failure) -> Any:
        failure.trap(*types)
        error = failure.value
        assert error is not None  # trap() passed: there is an exception
        return _unwrap(fn(error))

    return _branch(x).addErrback(handle)


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
    ``clock`` is any IReactorTime (``task.Clock`` in tests). Only a realized
    ``d`` is left without a timer: one that was fired but waits on another
    Deferred (a callback returned it) is still pending. As with Manifold, the
    producer's late ``callback``/``errback`` of a timed-out ``d`` is a no-op.
    """
    d = to_deferred(d)
    if realized(d):
        return d
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    # Module-level callbacks with their arguments, not closures: a server may
    # hold thousands of these at once, and each closure is more objects for
    # the garbage collector to walk.
    call = clock.callLater(seconds, _expire, d, seconds, value)
    d.addBoth(_timeout_done, call, seconds, value)
    return d


def _timeout_result(seconds: float, value: Any) -> Any:
    """What a timed-out Deferred holds: ``value``, else a TimeoutError."""
    if value is NOTHING:
        return Failure(TimeoutError(f"timed out after {seconds} s"))
    return value


def _expire(d: Deferred, seconds: float, value: Any) -> None:
    """The timer of ``timeout``: realize ``d`` if it is still pending.

    A never-fired ``d`` gets the timeout's result, and its producer's late
    ``callback`` is swallowed (Twisted's flag for cancellation). A ``d``
    waiting on another Deferred cannot be fired again: the awaited Deferred
    is cancelled instead, and ``_timeout_done`` turns the resulting
    ``CancelledError`` into the timeout's result.
    """
    if not d.called:
        d._suppressAlreadyCalled = True  # Manifold: a later success! is a no-op
        result = _timeout_result(seconds, value)
        if isinstance(result, Failure):
            d.errback(result)
        else:
            d.callback(result)
    elif not realized(d):
        d.cancel()


def _timeout_done(result: Any, call: Any, seconds: float, value: Any) -> Any:
    """Callback ``timeout`` adds to ``d``: the result reached it in time, so
    cancel the timer; or the timer ran (it is no longer active, and only this
    callback cancels it) and cancelled what ``d`` waited on, so replace that
    ``CancelledError`` with the timeout's result, as Twisted's ``addTimeout``
    does."""
    if call.active():
        call.cancel()
        return result
    if isinstance(result, Failure) and result.check(defer.CancelledError):
        return _timeout_result(seconds, value)
    return result


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
    """Whether ``d`` has a result now (Manifold's ``realized?``): fired, and
    not paused (e.g. waiting on a Deferred one of its callbacks returned)."""
    return (bool(d.called) and not d.paused
            and not isinstance(getattr(d, "result", None), Deferred))


def find_cause(error: Union[BaseException, Failure, None],
               match: Callable[[BaseException], bool],
               max_seen: int = 32) -> Optional[BaseException]:
    """The first exception behind ``error`` for which ``match`` is true, or None.

    Looks through Twisted's wrappers that carry other failures (the HTTP
    client's ``ResponseNeverReceived``/``ResponseFailed``/
    ``RequestTransmissionFailed`` keep theirs in ``.reasons``) and chained
    causes, breadth first, at most ``max_seen`` exceptions (a bound, since a
    wrapper could hold many)."""
    pending: List[Any] = [error]
    for _ in range(max_seen):
        if not pending:
            return None
        e = pending.pop(0)
        if isinstance(e, Failure):
            e = e.value
        if not isinstance(e, BaseException):
            continue
        if match(e):
            return e
        pending.extend(getattr(e, "reasons", None) or ())
        if e.__cause__ is not None:
            pending.append(e.__cause__)
    return None


__all__: List[str] = [
    "NOTHING", "to_deferred", "chain", "catch", "zip", "alt", "timeout",
    "future", "loop", "recur", "Recur", "realized", "cancel_call", "find_cause",
]
