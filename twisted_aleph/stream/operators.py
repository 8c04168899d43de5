"""Stream operators: map, filter, transform, buffer, batch, consume, reduce...

Each derived stream is fed by an edge (see ``graph.py``) that closes it when
its source drains, and closes the source when it is itself closed and was the
source's only consumer. Nothing here blocks or spins: waiting is always a
Deferred handed back to the edge.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, List, Optional

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twisted_aleph.stream import xforms
from twisted_aleph.stream.coerce import to_source
from twisted_aleph.stream.core import Edge, Offered, attach, offer_all, release
from twisted_aleph.stream.default import Stream, log
from twisted_aleph.stream.graph import MapEdge, SinkEdge, connect, connect_via


_DRAINED = object()


def _as_offer(result: Any) -> Offered:
    """Turn a handler's return (value, Deferred, coroutine) into an Offered."""
    if isinstance(result, Deferred):
        return result.addCallback(lambda _: True)
    if hasattr(result, "__await__") or hasattr(result, "cr_frame"):
        return defer.ensureDeferred(result).addCallback(lambda _: True)
    return True


def map(f: Callable[..., Any], *sources: Any) -> Stream:  # noqa: A001
    """A stream of ``f(msg)``; with several sources, of ``f(a, b, ...)`` zipped."""
    if len(sources) != 1:
        return map(lambda args: f(*args), zip_streams(*sources))
    dst = Stream(description="map")
    attach(to_source(sources[0]), MapEdge(f, dst))
    return dst


def filter(pred: Callable[[Any], Any], src: Any) -> Stream:  # noqa: A001
    """A stream of the messages for which ``pred`` is true."""
    dst = Stream(description="filter")
    connect_via(src, lambda msg: dst.offer(msg) if pred(msg) else True, dst, "filter")
    return dst


def mapcat(f: Callable[[Any], Iterable[Any]], src: Any) -> Stream:
    """A stream of every item of every ``f(msg)``, in order.

    An exception from ``f`` or from the iterable it returns (even after a
    wait on backpressure) is logged and ends the pipeline, as in ``map``.
    """
    dst = Stream(description="mapcat")

    def failed(failure: Any, msg: Any) -> bool:
        log.failure("error in stream mapcat on {msg!r}", failure, msg=msg)
        dst.close()
        return False

    def offer(msg: Any) -> Offered:
        r = offer_all(dst, f(msg))
        if r is True or r is False:
            return r
        return r.addErrback(failed, msg)

    connect_via(src, offer, dst, "mapcat")
    return dst


class _TransformEdge(Edge):
    """Runs each message through a stage; offers what comes out, in order.

    Once the stage says Reduced (``take(n)`` is done), or the source drains,
    the stage is completed, its tail offered, and the sink closed, but only
    after every earlier output was accepted: closing first would lose them.
    """

    __slots__ = ("rf", "finished")

    def __init__(self, stage: xforms.Stage, sink: Stream) -> None:
        super().__init__(sink, False, "transform")
        self.rf = stage(xforms.Appender())
        self.finished = False

    def deliver(self, msg: Any) -> Offered:
        if self.finished:
            return False
        try:
            acc = self.rf.step([], msg)
        except Exception:
            log.failure("error in stream transform on {msg!r}", msg=msg)
            self.finished = True
            self.sink.close()
            return False
        if isinstance(acc, xforms.Reduced):
            self.finished = True
            r = offer_all(self.sink, acc.value)
            if r is True or r is False:
                self._complete()
                return False
            return r.addCallback(lambda _: self._complete())
        return offer_all(self.sink, acc) if acc else True

    def source_drained(self) -> None:
        if not self.finished:
            self.finished = True
            self._complete()

    def _complete(self) -> bool:
        """Offer the stage's tail, then close the sink; False: edge done."""
        try:
            tail = self.rf.complete([])
        except Exception:
            log.failure("error completing stream transform")
            tail = []
        r = offer_all(self.sink, tail)
        if r is True or r is False:
            self.sink.close()
        else:
            r.addBoth(lambda _: self.sink.close())
        return False


def transform(stage: xforms.Stage, src: Any, buffer_size: int = 0) -> Stream:
    """Run ``src`` through a transducer-like stage (``xforms.take(10)``...)."""
    dst = Stream(buffer_size, description="transform")
    attach(to_source(src), _TransformEdge(stage, dst))
    return dst


def buffer(n: int, src: Any) -> Stream:
    """A view of ``src`` that accepts ``n`` messages ahead of its consumer."""
    dst = Stream(n, description="buffer")
    attach(to_source(src), SinkEdge(dst, downstream=True, upstream=False, description="buffer"))
    return dst


class _BatchEdge(Edge):
    """Collects messages into lists; flushes when full, when the oldest has
    waited ``max_latency``, or when the source drains."""

    __slots__ = ("max_size", "max_latency", "clock", "batch", "timer", "waiting")

    def __init__(self, sink: Stream, max_size: int, max_latency: Optional[float],
                 clock: Any) -> None:
        super().__init__(sink, False, "batch")
        self.max_size = max_size
        self.max_latency = max_latency
        self.clock = clock
        self.batch: List[Any] = []
        self.timer: Any = None
        self.waiting: Optional[Deferred] = None  # a timed flush not yet accepted

    def deliver(self, msg: Any) -> Offered:
        self.batch.append(msg)
        if len(self.batch) >= self.max_size:
            return self.flush()
        if self.timer is None and self.max_latency is not None:
            self.timer = self.clock.callLater(self.max_latency, self._expired)
        waiting = self.waiting
        if waiting is not None:
            # the sink has not taken the last timed batch: hold the source
            return waiting
        return True

    def _expired(self) -> None:
        self.timer = None
        r = self.flush()
        if isinstance(r, Deferred):
            self.waiting = r
            r.addBoth(self._accepted)

    def _accepted(self, result: Any) -> Any:
        self.waiting = None
        return result

    def flush(self) -> Offered:
        self._cancel_timer()
        if not self.batch:
            return True
        out, self.batch = self.batch, []
        return self.sink.offer(out)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def detach(self) -> None:
        """The sink was closed: stop the latency timer with the edge."""
        self._cancel_timer()
        super().detach()

    def source_drained(self) -> None:
        r = self.flush()
        if isinstance(r, Deferred):
            r.addBoth(lambda _: self.sink.close())
        else:
            self.sink.close()


def batch(max_size: int, max_latency: Optional[float], src: Any,
          clock: Any = None) -> Stream:
    """Lists of up to ``max_size`` messages, emitted when full or when the
    oldest message in the batch has waited ``max_latency`` seconds."""
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    dst = Stream(description="batch")
    attach(to_source(src), _BatchEdge(dst, max_size, max_latency, clock))
    return dst


class _ConsumeEdge(Edge):
    """Calls ``fn`` on each message; its Deferred result holds the next one."""

    __slots__ = ("fn", "done")

    def __init__(self, fn: Callable[[Any], Any], done: Deferred) -> None:
        super().__init__(None, True, "consume")
        self.fn = fn
        self.done = done

    def deliver(self, msg: Any) -> Offered:
        try:
            r = _as_offer(self.fn(msg))
        except Exception:
            self._fail(None)
            return False
        if isinstance(r, Deferred):
            return r.addErrback(self._fail)
        return r

    def _fail(self, failure: Any) -> bool:
        if not self.done.called:
            if failure is None:
                self.done.errback()
            else:
                self.done.errback(failure)
        self.detach()
        return False

    def source_drained(self) -> None:
        if not self.done.called:
            self.done.callback(True)


def consume(fn: Callable[[Any], Any], src: Any) -> Deferred:
    """Call ``fn`` on every message; Deferred[True] once ``src`` is drained.

    If ``fn`` returns a Deferred or coroutine, the next message waits for it
    (Manifold's ``consume-async``). If ``fn`` raises, consumption stops, the
    source is closed and the returned Deferred fails with that error.
    """
    done: Deferred = Deferred()
    attach(to_source(src), _ConsumeEdge(fn, done))
    return done


class _ReduceEdge(Edge):
    """Folds each message into ``acc``; once done (Reduced, or ``f`` raised)
    it lets go of the source without closing it, as Manifold's pulling
    ``reduce`` leaves the rest of the source to be taken."""

    __slots__ = ("f", "acc", "done")

    def __init__(self, f: Callable[[Any, Any], Any], init: Any, done: Deferred) -> None:
        super().__init__(None, False, "reduce")
        self.f = f
        self.acc = init
        self.done = done

    def deliver(self, msg: Any) -> Offered:
        try:
            acc = self.f(self.acc, msg)
        except Exception:
            failure = Failure()
            release(self)
            self.done.errback(failure)
            return True
        if isinstance(acc, xforms.Reduced):
            self.acc = acc.value
            release(self)
            self.done.callback(self.acc)
            return True
        self.acc = acc
        return True

    def source_drained(self) -> None:
        if not self.done.called:
            self.done.callback(self.acc)


def reduce(f: Callable[[Any, Any], Any], init: Any, src: Any) -> Deferred:
    """Deferred of ``f`` folded over every message of ``src``, from ``init``.

    ``f`` may return :class:`xforms.Reduced` to stop early; if it raises, the
    Deferred fails with that error.
    """
    done: Deferred = Deferred()
    attach(to_source(src), _ReduceEdge(f, init, done))
    return done


def put_all(sink: Any, items: Iterable[Any]) -> Deferred:
    """Put every item in order; Deferred[bool], False if the sink closed first.

    An error from ``items`` fails the Deferred; it is never raised here.
    """
    try:
        r = offer_all(sink, items)
    except Exception:
        return defer.fail()
    if r is True or r is False:
        return defer.succeed(r)
    return r


def periodically(period: float, fn: Callable[[], Any], clock: Any = None,
                 initial_delay: Optional[float] = None) -> Stream:
    """A stream of ``fn()`` every ``period`` seconds (first after
    ``initial_delay``, default one period). A tick whose previous message is
    still unconsumed is skipped, so a slow reader never piles up values.
    Closing the stream stops the timer; an exception in ``fn`` closes it."""
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    s = Stream(1, description="periodically")
    pending: List[Any] = [None]
    loop = task.LoopingCall(lambda: tick())
    loop.clock = clock

    def tick() -> None:
        if s.is_closed:
            return
        if pending[0] is not None and not pending[0].called:
            return
        try:
            value = fn()
        except Exception:
            log.failure("error in periodically({fn!r}); closing", fn=fn)
            s.close()
            return
        r = s.offer(value)
        pending[0] = r if isinstance(r, Deferred) else None

    def stop() -> None:
        if loop.running:
            loop.stop()

    def start() -> None:
        if not s.is_closed:
            loop.start(period, now=True).addErrback(
                lambda f: log.failure("periodically stopped", f))

    delay = period if initial_delay is None else initial_delay
    first = clock.callLater(delay, start)

    def stop_all() -> None:
        if first.active():
            first.cancel()
        stop()

    s.on_closed(stop_all)
    return s


def zip_streams(*sources: Any) -> Stream:
    """A stream of tuples, one message from each source; ends with the first.

    A take that fails (or raises) is logged and closes the output, like a
    drained source: never a silent stop or an unhandled Deferred error.
    Closing the output stops taking: pending takes are withdrawn and each
    source that feeds nothing else is closed (upstream propagation, as for
    a single-source ``map``). Plain iterables are coerced with ``to_source``.
    """
    srcs = [src if hasattr(src, "take") else to_source(src) for src in sources]
    dst = Stream(description="zip")
    takes: List[Deferred] = []

    def step(_: Any = None) -> None:
        if dst.is_closed:
            return
        ds = [defer.maybeDeferred(src.take, _DRAINED) for src in srcs]
        takes[:] = ds
        defer.gatherResults(ds, consumeErrors=True).addCallbacks(got, failed)

    def failed(f: Any) -> None:
        del takes[:]
        if f.check(defer.FirstError):
            f = f.value.subFailure
        if dst.is_closed and f.check(defer.CancelledError):
            return  # withdrawn by stop()
        log.failure("zip_streams: take from a source failed; closing the zipped stream", f)
        dst.close()

    def got(values: List[Any]) -> None:
        del takes[:]
        if dst.is_closed:
            return
        if any(v is _DRAINED for v in values):
            dst.close()
            return
        d = dst.put(tuple(values))
        d.addCallback(lambda ok: step() if ok else None)

    def stop() -> None:
        pending, takes[:] = list(takes), []
        for d in pending:
            if not d.called:
                d.cancel()
        for src in srcs:
            close = getattr(src, "close", None)
            if close is not None and not getattr(src, "downstream", None):
                close()

    dst.on_closed(stop)
    step()
    return dst


__all__ = [
    "map", "filter", "mapcat", "transform", "buffer", "batch", "consume",
    "reduce", "put_all", "periodically", "zip_streams", "connect",
]
