"""The connection graph: who feeds whom, and how closing propagates.

``connect(src, dst)`` attaches a push :class:`~twisted_aleph.stream.core.Edge`
to ``src`` (:func:`~twisted_aleph.stream.core.attach`). Propagation
follows Manifold:

* downstream: when ``src`` is drained, ``dst`` is closed (``downstream=True``);
* a closed ``dst`` detaches its edge at once, so ``src`` stops feeding it;
* upstream: when the last edge of ``src`` is detached, ``src`` is closed
  too, so closing the end of a pipeline stops its head (a hung-up HTTP
  client stops a ``periodically`` timer, a closed WebSocket ends its bus
  subscription). With ``upstream=True`` the source is closed even if it
  still feeds other sinks.

A duplex stream (TCP, WebSocket) is a :class:`SplicedStream`: puts go to one
stream, takes come from another.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred

from twisted_aleph.stream.coerce import to_source
from twisted_aleph.stream.core import Edge, Offered, attach
from twisted_aleph.stream.default import log


class SplicedStream:
    """A duplex stream: ``put`` goes to ``sink``, ``take`` comes from ``source``."""

    __slots__ = ("sink", "source", "info", "__weakref__")

    def __init__(self, sink: Any, source: Any, info: Optional[dict] = None) -> None:
        self.sink = sink
        self.source = source
        self.info = info if info is not None else {}

    def __repr__(self) -> str:
        return f"<SplicedStream sink={self.sink!r} source={self.source!r}>"

    # sink half
    def offer(self, msg: Any) -> Offered:
        return self.sink.offer(msg)

    def put(self, msg: Any) -> Deferred:
        return self.sink.put(msg)

    def try_put(self, msg: Any, timeout: float, value: Any = False,
                clock: Any = None) -> Deferred:
        return self.sink.try_put(msg, timeout, value, clock)

    def close(self) -> None:
        self.sink.close()

    @property
    def is_closed(self) -> bool:
        return self.sink.is_closed

    def on_closed(self, callback: Callable[[], Any]) -> None:
        self.sink.on_closed(callback)

    def _forget_on_closed(self, callback: Callable[[], Any]) -> None:
        forget = getattr(self.sink, "_forget_on_closed", None)
        if forget is not None:
            forget(callback)

    # source half
    def take(self, *args: Any) -> Deferred:
        return self.source.take(*args)

    def try_take(self, *args: Any, **kwargs: Any) -> Deferred:
        return self.source.try_take(*args, **kwargs)

    @property
    def is_drained(self) -> bool:
        return self.source.is_drained

    def on_drained(self, callback: Callable[[], Any]) -> None:
        self.source.on_drained(callback)

    @property
    def downstream(self) -> list:
        return self.source.downstream

    def __aiter__(self) -> Any:
        return self.source.__aiter__()

    def _add_edge(self, edge: Edge) -> None:
        self.source._add_edge(edge)

    def _remove_edge(self, edge: Edge) -> None:
        self.source._remove_edge(edge)


def splice(sink: Any, source: Any) -> SplicedStream:
    """Present a separate sink and source as one duplex stream."""
    return SplicedStream(sink, source)


class SinkEdge(Edge):
    """Feeds each message, unchanged, into a sink."""

    __slots__ = ("downstream", "offer")

    def __init__(self, sink: Any, downstream: bool = True, upstream: bool = False,
                 description: str = "connect") -> None:
        super().__init__(sink, upstream, description)
        self.downstream = downstream
        # bound once: a duplex sink's own sink, skipping a forwarding call
        self.offer = sink.sink.offer if isinstance(sink, SplicedStream) else sink.offer

    def deliver(self, msg: Any) -> Offered:
        return self.offer(msg)

    def source_drained(self) -> None:
        if self.downstream:
            self.sink.close()


def connect(src: Any, dst: Any, downstream: bool = True, upstream: bool = False,
            description: str = "connect") -> None:
    """Feed every message of ``src`` into ``dst``, honouring dst's backpressure.

    ``src`` may be anything :func:`to_source` takes (a list, a generator, a
    Deferred...), as Manifold's ``connect`` takes anything ``->source`` does.
    """
    attach(to_source(src), SinkEdge(dst, downstream, upstream, description))


class MapEdge(Edge):
    """Feeds ``f(msg)`` into a derived sink (``stream.map``'s edge).

    An exception from ``f`` is logged, the derived sink is closed and the
    edge detached: one bad message ends that pipeline, not the process.
    """

    __slots__ = ("f", "offer")

    def __init__(self, f: Callable[[Any], Any], sink: Any, description: str = "map") -> None:
        super().__init__(sink, False, description)
        self.f = f
        self.offer = sink.offer

    def deliver(self, msg: Any) -> Offered:
        try:
            value = self.f(msg)
        except Exception:
            log.failure("error in stream {op} on {msg!r}", op=self.description, msg=msg)
            self.sink.close()
            return False
        return self.offer(value)

    def source_drained(self) -> None:
        self.sink.close()


class CallbackEdge(Edge):
    """Feeds each message through ``fn(msg) -> Offered`` into a derived sink.

    An exception from ``fn`` is logged, the derived sink is closed and the
    edge detached: one bad message ends that pipeline, not the process.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Any], Offered], sink: Any,
                 description: str) -> None:
        super().__init__(sink, False, description)
        self.fn = fn

    def deliver(self, msg: Any) -> Offered:
        try:
            return self.fn(msg)
        except Exception:
            log.failure("error in stream {op} on {msg!r}",
                        op=self.description, msg=msg)
            self.sink.close()
            return False

    def source_drained(self) -> None:
        self.sink.close()


def connect_via(src: Any, fn: Callable[[Any], Offered], dst: Any,
                description: str = "connect_via") -> None:
    """Feed ``src`` into ``dst`` through ``fn``, which does the putting."""
    attach(to_source(src), CallbackEdge(fn, dst, description))
