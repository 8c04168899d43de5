"""What a transport needs to build on streams (Manifold's ``manifold.stream.core``).

The user facade is :mod:`twisted_aleph.stream`; this module is the interface
for implementers: the TCP, UDP, HTTP and WebSocket transports and any new
source or sink. A transport imports the facade and this module and nothing
else from the stream package, so the buffered stream (``default``) and the
connection graph (``graph``) can change behind them.

* a **sink** is what can be put into: :class:`Sink` (``offer``, ``put``,
  ``close``, ``is_closed``, ``on_closed``). :class:`Closeable` is the closing
  every sink shares;
* a **source** is what can be taken from: :class:`Source` (``take``,
  ``is_drained``, ``downstream``, ``close``, plus ``_add_edge`` and
  ``_remove_edge`` for push consumers).
  A Stream and a duplex ``SplicedStream`` are both;
* an :class:`Edge` is a push consumer: :func:`attach` hands it each message
  of a source as it arrives and waits while it answers with a Deferred;
  :meth:`Edge.detach` and :func:`release` let go of the source;
* :data:`Offered` is what ``offer`` answers (True, False or a Deferred), and
  :func:`offer_all` offers many messages in order, honouring backpressure.

Nothing here allocates per message: an edge keeping up answers True, and
``offer`` of a message accepted at once returns True, not a Deferred.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, List, Protocol, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger

log = Logger()

#: what a sink's ``offer`` answers (and an :meth:`Edge.deliver`): True,
#: accepted now; False, refused (closed, or this edge is finished); a
#: Deferred firing True/False, accepted later (the consumer is behind).
Offered = Union[bool, Deferred]


class Sink(Protocol):
    """What can be put into (Manifold's ``IEventSink``)."""

    def offer(self, msg: Any) -> Offered:
        """Put without a Deferred when accepted at once (the hot path)."""

    def put(self, msg: Any) -> Deferred:
        """Deferred[bool]: True once accepted, False if closed."""

    def close(self) -> None:
        """No more puts."""

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` was called."""

    def on_closed(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once closed (now, if it is)."""


class Source(Protocol):
    """What can be taken from (Manifold's ``IEventSource``)."""

    def take(self, *args: Any) -> Deferred:
        """Deferred of the next message (or the default once drained)."""

    @property
    def is_drained(self) -> bool:
        """Whether closed and every message was taken."""

    @property
    def downstream(self) -> List[Any]:
        """The sinks its edges feed."""

    def close(self) -> None:
        """No more messages (for a duplex stream: closes its sink half)."""

    def _add_edge(self, edge: "Edge") -> None:
        """Start pushing messages into ``edge`` (called by :func:`attach`)."""

    def _remove_edge(self, edge: "Edge") -> None:
        """Stop pushing into ``edge`` (called by :meth:`Edge.detach`)."""


class Edge:
    """A push consumer attached to a source, made by ``connect`` and its kin.

    ``deliver(msg)`` answers True (accepted, keep going), False (this edge is
    finished: detach it), or a Deferred firing True/False (accepted; wait for
    it before the next message). ``source_drained()`` is told when the source
    has nothing more to give. ``sink`` is where the edge puts (None if it
    puts nowhere); ``upstream=True`` closes the source when the edge goes,
    even if it feeds other edges.
    """

    __slots__ = ("source", "sink", "upstream", "description")

    def __init__(self, sink: Any = None, upstream: bool = False,
                 description: str = "") -> None:
        self.source: Any = None
        self.sink = sink
        self.upstream = upstream
        self.description = description

    def deliver(self, msg: Any) -> Offered:
        raise NotImplementedError

    def source_drained(self) -> None:
        """The source is drained; by default nothing more to do."""

    def detach(self) -> None:
        """Stop receiving from the source (and close it, if ``upstream``)."""
        source = self.source
        if source is not None:
            source._remove_edge(self)


class Closeable:
    """The closing every sink shares (Manifold's ``close``/``on-closed``):
    closed once, ``on_closed`` callbacks run once (an error in one is
    logged), and forgettable, so a sink fed by many short-lived sources does
    not keep their edges. Subclasses set ``_closed = False`` and
    ``_on_closed = []`` in ``__init__`` and call :meth:`_mark_closed`."""

    __slots__ = ("_closed", "_on_closed")

    _closed: bool
    _on_closed: List[Callable[[], Any]]

    def _mark_closed(self) -> bool:
        """Mark closed and run the on_closed callbacks; False if it already was."""
        if self._closed:
            return False
        self._closed = True
        callbacks, self._on_closed = self._on_closed, []
        for cb in callbacks:
            run_callback(cb)
        return True

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` was called: no more puts are accepted."""
        return self._closed

    def on_closed(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once closed (now, if it is)."""
        if self._closed:
            run_callback(callback)
        else:
            self._on_closed.append(callback)

    def _forget_on_closed(self, callback: Callable[[], Any]) -> None:
        """Drop a callback registered with :meth:`on_closed`, if still there."""
        try:
            self._on_closed.remove(callback)
        except ValueError:
            pass


def run_callback(cb: Callable[[], Any]) -> None:
    """Call a close/drain callback; an error in it is logged, never raised
    into the code that closed the stream."""
    try:
        cb()
    except Exception:
        log.failure("error in stream callback {cb!r}", cb=cb)


def attach(src: Source, edge: Edge) -> None:
    """Start pushing ``src``'s messages into ``edge``; detach when its sink closes.

    ``src`` must be a source (a Stream or a duplex stream); the facade's
    ``connect``, ``map``... coerce lists, generators and Deferreds with
    ``to_source`` first, as Manifold's ``connect`` does with ``->source``.
    If the edge's sink is already closed, nothing is attached and ``src`` is
    closed when nothing else consumes it.
    """
    if not hasattr(src, "_add_edge"):
        raise TypeError(f"not a source: {src!r} (coerce it with stream.to_source)")
    sink = edge.sink
    if sink is not None:
        if sink.is_closed:
            if edge.upstream or not src.downstream:
                src.close()
            return
        sink.on_closed(edge.detach)
    src._add_edge(edge)


def release(edge: Edge) -> None:
    """Detach ``edge`` without closing its source, whatever edges remain.

    For consumers that stop taking but leave the rest of the source to
    others (Manifold's ``reduce``, which pulls with ``take!``): unlike
    :meth:`Edge.detach`, the source is not closed when this was its last
    edge. Safe to call from the edge's own ``deliver``.
    """
    source = edge.source
    if source is not None:
        source._remove_edge(edge, close_if_last=False)


def offer_all(sink: Sink, items: Iterable[Any]) -> Offered:
    """Offer items in order, waiting on backpressure; True/False or a Deferred.

    An error from ``items`` before the first wait is raised here; after it,
    the returned Deferred fails with it (as it does if a put fails).
    """
    it = iter(items)
    for msg in it:
        r = sink.offer(msg)
        if r is True:
            continue
        if r is False:
            return False
        done: Deferred = Deferred()
        r.addCallbacks(_offer_rest, done.errback, callbackArgs=(sink, it, done))
        return done
    return True


def _offer_rest(ok: bool, sink: Any, it: Iterator[Any], done: Deferred) -> None:
    """Resume :func:`offer_all` once a put was accepted; realize ``done``."""
    if not ok:
        done.callback(False)
        return
    result = True
    try:
        for msg in it:
            r = sink.offer(msg)
            if r is True:
                continue
            if r is False:
                result = False
                break
            r.addCallbacks(_offer_rest, done.errback, callbackArgs=(sink, it, done))
            return
    except Exception:
        done.errback()
        return
    done.callback(result)


__all__ = [
    "Offered", "Sink", "Source", "Edge", "Closeable", "run_callback",
    "attach", "release", "offer_all",
]
