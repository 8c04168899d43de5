"""Coercions into and out of streams (Manifold's ``->source``, ``stream->seq``).

``to_source`` turns iterables, async iterables, Deferreds and queues into a
:class:`Stream`, always pulling with backpressure: the next item is fetched
only once the previous one was accepted. ``to_blocking_iter`` goes the other
way for code running in a thread, never on the reactor thread (it would
deadlock there, so it refuses).
"""

from __future__ import annotations

import queue as _queue
from typing import Any, Iterable, Iterator, Optional

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.python import threadable

from twisted_aleph.stream.default import Stream, log

_END = object()
_AGAIN = object()  # a queue read that timed out: check the stream, read again
_TIMED_OUT = object()  # to_blocking_iter: no message within the timeout
_REACTOR_SLACK = 5.0  # to_blocking_iter: extra seconds allowed for the reactor to answer

#: how long one thread-pool read of a ``queue.Queue`` blocks. A closed stream
#: stops reading within this time, so no pool thread stays blocked forever
#: (that would hang the reactor's shutdown); it costs one wake-up per period
#: while the queue is idle.
QUEUE_POLL_SECONDS = 0.5


def to_source(x: Any, *, blocking: bool = False, buffer_size: int = 0) -> Any:
    """Coerce ``x`` into a source stream.

    * a Stream (or duplex) is returned as it is;
    * a Deferred becomes a stream of its one value;
    * an async iterable is pulled with ``__anext__``;
    * an ``asyncio.Queue`` is read until it yields None (needs the asyncio reactor);
    * a ``queue.Queue`` is read in the thread pool until it yields None;
    * any other iterable is pulled item by item: on the reactor thread, or in
      the thread pool when ``blocking=True`` (an iterator that sleeps or does
      I/O, like the seed's lazy seq).
    """
    if isinstance(x, Stream) or hasattr(x, "_add_edge"):
        return x
    s = Stream(buffer_size, description="source")
    if isinstance(x, Deferred):
        def one(value: Any) -> None:
            s.put(value).addBoth(lambda _: s.close())

        def failed(f: Any) -> None:
            log.failure("source Deferred failed; closing stream", f)
            s.close()
        x.addCallbacks(one, failed)
        return s
    if hasattr(x, "__anext__") or hasattr(x, "__aiter__"):
        _pull(s, _async_next(x.__aiter__()), stop_on_none=False)
        return s
    if _is_asyncio_queue(x):
        _pull(s, lambda: Deferred.fromFuture(_ensure_future(x.get())))
        return s
    if isinstance(x, _queue.Queue):
        _pull(s, lambda: threads.deferToThread(_get_or_again, x))
        return s
    it = iter(x)
    if blocking:
        _pull(s, lambda: threads.deferToThread(next, it, _END), stop_on_none=False)
    else:
        _pump_sync(s, it)
    return s


def _is_asyncio_queue(x: Any) -> bool:
    try:
        import asyncio
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, asyncio.Queue)


def _get_or_again(q: _queue.Queue) -> Any:
    """Blocking read (in a pool thread) bounded by QUEUE_POLL_SECONDS."""
    try:
        return q.get(timeout=QUEUE_POLL_SECONDS)
    except _queue.Empty:
        return _AGAIN


def _ensure_future(coro: Any) -> Any:
    import asyncio
    return asyncio.ensure_future(coro)


def _async_next(ait: Any) -> Any:
    async def nxt() -> Any:
        try:
            return await ait.__anext__()
        except StopAsyncIteration:
            return _END
    return lambda: defer.ensureDeferred(nxt())


def _pull(s: Stream, fetch: Any, stop_on_none: bool = True) -> None:
    """Fetch one item at a time (a Deferred each), put it, repeat; ``_END``
    (or None, for queues, whose end marker it is) ends the stream. Stops
    fetching once the stream is closed."""
    def step(_: Any = True) -> None:
        if _ is False or s.is_closed:
            s.close()
            return
        fetch().addCallbacks(got, failed)

    def got(item: Any) -> None:
        if item is _AGAIN:
            step()
            return
        if item is _END or (item is None and stop_on_none):
            s.close()
            return
        r = s.offer(item)
        if r is True:
            step()
        elif r is False:
            s.close()
        else:
            r.addCallback(step)

    def failed(f: Any) -> None:
        log.failure("error reading source; closing stream", f)
        s.close()

    step()


def _pump_sync(s: Stream, it: Iterator[Any]) -> None:
    """Put items from a plain iterator, pausing whenever the stream is full."""
    while True:
        try:
            item = next(it, _END)
        except Exception:
            log.failure("error in source iterator; closing stream")
            s.close()
            return
        if item is _END:
            s.close()
            return
        r = s.offer(item)
        if r is True:
            continue
        if r is False:
            return
        r.addCallback(lambda ok: _pump_sync(s, it) if ok else None)
        return


def to_blocking_iter(source: Any, timeout: Optional[float] = None,
                     reactor: Any = None) -> Iterator[Any]:
    """Iterate a stream from a thread, blocking on each take (``stream->seq``).

    Raises RuntimeError if called on the reactor thread, where it would
    deadlock. ``timeout`` bounds each wait (``TimeoutError`` when exceeded);
    the take that timed out is withdrawn, so a message arriving later stays
    in the stream for the next reader.
    """
    if threadable.isInIOThread():
        raise RuntimeError("to_blocking_iter blocks: call it from a thread, "
                           "not the reactor thread")
    if reactor is None:
        from twisted.internet import reactor  # type: ignore[no-redef]
    results: _queue.Queue = _queue.Queue()

    def take() -> None:
        if timeout is None:
            d = source.take(_END)
        else:
            # timed on the reactor: a take that times out is withdrawn there,
            # so no message can go to a wait that was given up
            d = source.try_take(_END, timeout, _TIMED_OUT, clock=reactor)
        d.addBoth(results.put)

    # The reactor answers _TIMED_OUT itself; waiting longer than that here
    # means the reactor is not running (shutting down): give up all the same.
    wait = None if timeout is None else timeout + _REACTOR_SLACK
    while True:
        reactor.callFromThread(take)
        try:
            item = results.get(timeout=wait)
        except _queue.Empty:
            item = _TIMED_OUT
        if item is _TIMED_OUT:
            raise TimeoutError(f"no message within {timeout} s")
        if item is _END:
            return
        if hasattr(item, "raiseException"):
            item.raiseException()
        yield item


def stream_of(items: Iterable[Any]) -> Stream:
    """A closed stream holding ``items``: handy in tests and examples."""
    items = list(items)
    s = Stream(len(items))
    for item in items:
        s.offer(item)
    s.close()
    return s
