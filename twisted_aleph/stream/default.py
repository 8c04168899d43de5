"""The buffered stream: Manifold's ``manifold.stream.default`` on Twisted.

A :class:`Stream` is a sink (``put``) and a source (``take``) in one object.
``buffer_size`` messages are accepted at once; a put beyond that returns a
Deferred that fires only when a consumer makes room. That pending put *is*
backpressure, and every transport in twisted_aleph honours it.

A source is consumed one of two ways, never both at once:

* pull: ``take()`` returns a Deferred of the next message;
* push: :func:`twisted_aleph.stream.graph.connect` and friends attach an
  :class:`~twisted_aleph.stream.core.Edge`, and messages are handed to it
  synchronously as they arrive, waiting whenever the edge answers with a
  Deferred.

Push delivery is a loop, not recursion, so a million synchronous messages
never grow the stack. The hot path (``offer`` on a stream whose consumer is
keeping up) allocates no Deferred.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, List, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from twisted_aleph.stream.core import Closeable, Edge, Offered, run_callback

log = Logger()


class _Nothing:
    """Marker for "no default given"; a take on a drained stream yields None."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()

_EMPTY: Any = ()  # stands for an empty queue until the first append
#: pending takes between two sweeps of the ones realized from outside
_PRUNE_TAKERS_EVERY = 64


class Stream(Closeable):
    """A Manifold stream: put/take with a bounded buffer and backpressure."""

    __slots__ = (
        "buffer_size", "description", "_buffer", "_pending", "_takers",
        "_edges", "_blocked", "_awaited", "_delivering", "_drained", "_on_drained",
        "__weakref__",
    )

    def __init__(self, buffer_size: int = 0, description: str = "") -> None:
        if buffer_size < 0:
            raise ValueError("buffer_size must be >= 0")
        self.buffer_size = buffer_size
        self.description = description
        # The queues start as a shared empty tuple and become deques on first
        # append: most streams of an idle connection never queue anything,
        # and an empty deque costs ~600 bytes.
        self._buffer: Deque[Any] = _EMPTY
        self._pending: Deque[Tuple[Any, Deferred]] = _EMPTY
        self._takers: Deque[Tuple[Deferred, Any]] = _EMPTY
        self._edges: List[Edge] = []
        self._blocked = False  # delivery waits for the edges in _awaited
        self._awaited: List[Edge] = _EMPTY
        self._delivering = False
        self._closed = False
        self._drained = False
        self._on_closed: List[Callable[[], Any]] = []
        self._on_drained: List[Callable[[], Any]] = []

    def __repr__(self) -> str:
        state = "drained" if self._drained else "closed" if self._closed else "open"
        desc = f" {self.description}" if self.description else ""
        return (f"<Stream{desc} {state} buffered={len(self._buffer)}"
                f" pending={len(self._pending)}>")

    # -- sink side ---------------------------------------------------------

    def offer(self, msg: Any) -> Offered:
        """Put without allocating a Deferred when the message is accepted now.

        Returns True if accepted, False if the stream is closed, or a Deferred
        that fires True once the message has been accepted (or False if the
        stream went away first). Transports call this on their hot path.
        """
        if self._closed:
            return False
        if self._edges:
            # Straight to the edges only when nothing is queued ahead of msg
            # (and not re-entered from the backlog loop): keeps FIFO order.
            if not (self._blocked or self._delivering or self._buffer
                    or self._pending):
                if len(self._edges) != 1:
                    return self._push_one(msg)
                # the hot path, inlined (_push_one is the general case):
                # one consumer, keeping up
                edge = self._edges[0]
                try:
                    r = edge.deliver(msg)
                except Exception:
                    log.failure("error delivering {msg!r} through {edge}",
                                msg=msg, edge=edge.description or edge)
                    r = False
                if r is True:
                    return True
                if r is False:
                    self._remove_edge(edge)
                else:
                    self._await([(edge, r)])
                return True
        elif self._takers:
            takers = self._takers
            while takers:
                d, _ = takers.popleft()
                # A take given up on (timeout!, cancel) was realized from
                # outside: skip it, as Manifold does, and try the next one.
                if not d.called:
                    d.callback(msg)
                    return True
        if len(self._buffer) < self.buffer_size:
            if self._buffer is _EMPTY:
                self._buffer = deque()
            self._buffer.append(msg)
            return True
        d = Deferred(self._withdraw_put)  # cancel() withdraws the put
        if self._pending is _EMPTY:
            self._pending = deque()
        self._pending.append((msg, d))
        return d

    def put(self, msg: Any) -> Deferred:
        """Deferred[bool]: True once accepted, False if the stream is closed.

        Cancelling a pending put withdraws its message (as ``try_put`` does).
        """
        r = self.offer(msg)
        if r is True or r is False:
            return succeed(r)
        return r

    def try_put(self, msg: Any, timeout: float, value: Any = False,
                clock: Any = None) -> Deferred:
        """Like put, but gives up after ``timeout`` seconds, yielding ``value``.

        A put that times out is withdrawn: the message is not delivered later.
        """
        r = self.offer(msg)
        if r is True or r is False:
            return succeed(r)
        return _withdraw_after(r, timeout, value, clock,
                               lambda: self._withdraw_put(r))

    def close(self) -> None:
        """No more puts. Buffered messages can still be taken, then drained."""
        if not self._mark_closed():
            return
        # While a message is still on its way to an edge (delivery loop
        # running, or waiting on the edge's Deferred), draining would close
        # the sinks under it; the delivery loop drains once it is done.
        if not (self._buffer or self._pending or self._blocked
                or self._delivering):
            self._mark_drained()

    # -- source side -------------------------------------------------------

    def take(self, default: Any = NOTHING) -> Deferred:
        """Deferred of the next message, or ``default`` (None) once drained.

        Cancelling a pending take withdraws it; a take realized from outside
        (``deferred.timeout``) is skipped, and the next message kept.
        """
        if self._buffer:
            msg = self._buffer.popleft()
            if self._pending:  # (the guards of _refill and _check_drained, inlined)
                self._refill()
            d = succeed(msg)
            if self._closed:
                self._check_drained()
            return d
        if self._pending:
            msg, d = self._pending.popleft()
            _accepted(d)
            if self._closed:
                self._check_drained()
            return succeed(msg)
        if self._closed:
            self._mark_drained()
            return succeed(None if default is NOTHING else default)
        d = Deferred(self._withdraw_take)  # cancel() withdraws the take
        takers = self._takers
        if takers is _EMPTY:
            self._takers = takers = deque()
        elif not len(takers) % _PRUNE_TAKERS_EVERY:
            # Takes realized from outside (deferred.timeout) are only skipped
            # when a message comes: on an idle stream, drop them now and then.
            self._takers = takers = deque(t for t in takers if not t[0].called)
        takers.append((d, default))
        return d

    def try_take(self, default: Any = None, timeout: float = 0,
                 value: Any = None, clock: Any = None) -> Deferred:
        """Like take, but yields ``value`` if nothing comes within ``timeout``."""
        d = self.take(default)
        if d.called:
            return d
        return _withdraw_after(d, timeout, value, clock,
                               lambda: self._withdraw_take(d))

    @property
    def is_drained(self) -> bool:
        """Whether the stream is closed and every message was taken."""
        return self._drained

    def on_drained(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the stream is drained (now, if it is)."""
        if self._drained:
            run_callback(callback)
        else:
            self._on_drained.append(callback)

    @property
    def downstream(self) -> List[Any]:
        """The sinks this stream feeds through connect/map/... edges."""
        return [e.sink for e in self._edges if e.sink is not None]

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> Any:
        msg = await self.take(_END)
        if msg is _END:
            raise StopAsyncIteration
        return msg

    # -- push consumers (used by graph.py) -----------------------------------

    def _add_edge(self, edge: Edge) -> None:
        if self._drained:
            edge.source_drained()
            return
        edge.source = self
        self._edges.append(edge)
        # Anything pulled by takers stays theirs; the rest now flows to edges.
        self._deliver_backlog()

    def _remove_edge(self, edge: Edge, close_if_last: bool = True) -> None:
        """Detach ``edge``. ``close_if_last=False``: leave this stream open even
        if that was its last edge (a consumer that stops early, as reduce)."""
        try:
            self._edges.remove(edge)
        except ValueError:
            return
        edge.source = None
        # attach() asked the sink to detach this edge when it closes; a
        # long-lived sink fed by many short-lived sources must not keep them.
        forget = getattr(edge.sink, "_forget_on_closed", None)
        if forget is not None:
            forget(edge.detach)
        # A sink that closed with our message still pending will never answer:
        # stop waiting for it, so the other edges carry on.
        self._answered(edge)
        # Manifold: a source whose last sink went away is closed; with
        # upstream=True it is closed even if other sinks remain.
        if close_if_last and (edge.upstream or not self._edges):
            self.close()

    def _push_one(self, msg: Any) -> bool:
        """Hand ``msg`` to every edge; True: the stream has accepted it.

        An edge answering with a Deferred has taken the message but asks for
        a pause: delivery blocks until that Deferred fires, so the *next*
        message waits (in the buffer, or as a pending put). As in Manifold,
        where the connect loop has taken a message while its put downstream
        is still pending, one message is in flight per edge.
        """
        waits = None
        for edge in list(self._edges):
            try:
                r = edge.deliver(msg)
            except Exception:
                log.failure("error delivering {msg!r} through {edge}",
                            msg=msg, edge=edge.description or edge)
                r = False
            if r is False:
                self._remove_edge(edge)
            elif r is not True:
                if waits is None:
                    waits = []
                waits.append((edge, r))
        if waits is not None:
            self._await(waits)
        return True

    def _await(self, waits: List[Tuple[Edge, Deferred]]) -> None:
        """Block delivery until each edge answers its Deferred, or goes.

        All are registered before any callback runs: an answer already
        there must not restart delivery while others are outstanding.
        """
        if len(waits) > 1:  # an edge may have gone while others took msg
            live = set(self._edges)
            waits = [(edge, r) for edge, r in waits if edge in live]
        if not waits or waits[0][0] not in self._edges:
            return
        if self._awaited is _EMPTY:
            self._awaited = []
        self._awaited.extend(edge for edge, _ in waits)
        self._blocked = True
        for edge, r in waits:
            r.addCallbacks(self._edge_answered, self._edge_failed,
                           callbackArgs=(edge,), errbackArgs=(edge,))

    def _edge_answered(self, ok: Any, edge: Edge) -> None:
        """An edge's Deferred fired: False means that edge is finished."""
        if ok is False:
            self._remove_edge(edge)
        else:
            self._answered(edge)

    def _edge_failed(self, failure: Any, edge: Edge) -> None:
        log.failure("downstream put failed", failure)
        self._answered(edge)

    def _answered(self, edge: Edge) -> None:
        """``edge`` no longer holds delivery up; the last one resumes it."""
        awaited = self._awaited
        if edge not in awaited:
            return
        awaited.remove(edge)
        if not awaited:
            self._blocked = False
            self._deliver_backlog()

    def _deliver_backlog(self) -> None:
        """Push buffered and pending messages to edges until blocked or empty."""
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._edges and not self._blocked:
                # Hand msg on before realizing the put that makes room: that
                # put's callback may offer the next message at once.
                if self._buffer:
                    msg = self._buffer.popleft()
                    self._push_one(msg)
                    self._refill()
                elif self._pending:
                    msg, d = self._pending.popleft()
                    self._push_one(msg)
                    _accepted(d)
                else:
                    break
            if not self._blocked:
                self._check_drained()
        finally:
            self._delivering = False

    # -- bookkeeping -------------------------------------------------------

    def _refill(self) -> None:
        """Move the oldest pending put into the buffer, realizing it."""
        if self._pending:
            msg, d = self._pending.popleft()
            if self._buffer is _EMPTY:
                self._buffer = deque()
            self._buffer.append(msg)
            _accepted(d)

    def _check_drained(self) -> None:
        if self._closed and not self._buffer and not self._pending:
            self._mark_drained()

    def _mark_drained(self) -> None:
        if self._drained:
            return
        self._drained = True
        takers, self._takers = self._takers, _EMPTY
        for d, default in takers:
            if not d.called:  # not given up on (see offer)
                d.callback(None if default is NOTHING else default)
        edges = list(self._edges)
        for edge in edges:
            try:
                edge.source_drained()
            except Exception:
                log.failure("error propagating drain through {edge}", edge=edge)
        for edge in edges:  # nothing more will flow: let the sinks go
            self._remove_edge(edge)
        callbacks, self._on_drained = self._on_drained, []
        for cb in callbacks:
            run_callback(cb)

    def _withdraw_put(self, d: Deferred) -> None:
        for i, (_, pd) in enumerate(self._pending):
            if pd is d:
                del self._pending[i]
                self._check_drained()
                return

    def _withdraw_take(self, d: Deferred) -> None:
        for i, (td, _) in enumerate(self._takers):
            if td is d:
                del self._takers[i]
                return


class _End:
    __slots__ = ()


_END = _End()


def _accepted(put: Deferred) -> None:
    """Realize a pending put: its message was accepted. A put Deferred
    realized from outside (timeout!, cancel) is left alone, as Manifold does:
    its message was still queued, and is delivered."""
    if not put.called:
        put.callback(True)


def _withdraw_after(d: Deferred, timeout: float, value: Any, clock: Any,
                    withdraw: Callable[[], None]) -> Deferred:
    """Fire a new Deferred with d's result, or ``value`` after ``timeout``.

    A timeout of zero or less gives up at once, as Manifold does, without
    waiting for a clock tick.
    """
    if timeout <= 0:
        withdraw()
        return succeed(value)
    if clock is None:
        from twisted.internet import reactor as clock  # type: ignore[no-redef]
    out: Deferred = Deferred()

    def expire() -> None:
        withdraw()
        out.callback(value)

    call = clock.callLater(timeout, expire)

    def passthrough(result: Any) -> None:
        if call.active():
            call.cancel()
            out.callback(result)

    d.addBoth(passthrough)
    return out
