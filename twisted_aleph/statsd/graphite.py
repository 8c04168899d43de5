"""Forwarding flushes to Graphite's plaintext port, with a queue bounded in bytes.

:class:`GraphiteForwarder` writes each flush (``name value ts\\n`` lines)
over a reconnecting TCP client (``ClientService``). While Graphite is away
or slow, flushes wait in a queue of at most ``max_queued`` flushes and
``max_queued_bytes`` bytes (default 64 MiB); past either, the oldest are
dropped and counted (:attr:`GraphiteForwarder.dropped`). What is written to a
connection is held back while the transport asks its producer to pause, so
the kernel's and Twisted's buffers hold at most one flush beyond the queue.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, Iterator, List, Optional, Tuple

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_aleph.peerlog import LogThrottle

log = Logger()

#: flushes kept for Graphite while it is unreachable.
DEFAULT_MAX_QUEUED = 1000
#: bytes of flushes kept for Graphite while it is unreachable or slow.
DEFAULT_MAX_QUEUED_BYTES = 64 * 1024 * 1024


@implementer(IStreamClientEndpoint)
class _RecordingEndpoint:
    """An endpoint that notes the time of each failed connection attempt."""

    def __init__(self, endpoint: Any, forwarder: "GraphiteForwarder") -> None:
        self.endpoint = endpoint
        self.forwarder = forwarder

    def connect(self, factory: Any) -> Deferred:
        d = self.endpoint.connect(factory)

        def failed(failure: Any) -> Any:
            self.forwarder.last_exception = self.forwarder.now()
            return failure
        return d.addErrback(failed)  # type: ignore[no-any-return]


@implementer(IPushProducer)
class GraphiteForwarder:
    """Sends flushes to Graphite's plaintext port, queueing while it is away.

    ``send(payload)`` queues one flush; queued flushes are written whenever
    a connection is up and its transport is not asking us to pause.
    ``dropped`` counts flushes discarded, oldest first, because more than
    ``max_queued`` flushes or ``max_queued_bytes`` bytes were waiting. A
    flush written to a connection that then breaks is lost with it (TCP
    gives no receipt). For the admin interface's ``stats``: ``last_flush``
    (time of the last write), ``last_exception`` (of the last failed
    connection attempt), ``flush_length`` (bytes of the last flush).
    """

    def __init__(self, host: str, port: int, *, max_queued: int = DEFAULT_MAX_QUEUED,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 reactor: Any = None, endpoint: Any = None,
                 retry_policy: Any = None, clock: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, host, port)
        if max_queued < 1 or max_queued_bytes < 0:
            raise ValueError("max_queued >= 1 and max_queued_bytes >= 0")
        self.address = f"{host}:{port}"
        self.max_queued = max_queued
        self.max_queued_bytes = max_queued_bytes
        self.queue: Deque[bytes] = deque()
        self.queued_bytes = 0
        self.dropped = 0
        self.dropped_bytes = 0
        self.sent = 0
        self._clock = clock if clock is not None else reactor
        self.last_flush = self.last_exception = self.now()
        self.flush_length = 0
        self._protocol: Optional[Protocol] = None
        self._paused = False
        self._throttle = LogThrottle(10.0)
        self._written: List[Deferred] = []  # stop() waiting for the queue to be written
        factory = Factory.forProtocol(_GraphiteProtocol)
        factory.forwarder = self  # type: ignore[attr-defined]
        factory.noisy = False
        self.service = ClientService(
            _RecordingEndpoint(endpoint, self), factory,
            retryPolicy=retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=30.0),
            clock=self._clock)

    def now(self) -> float:
        return float(self._clock.seconds()) if hasattr(self._clock, "seconds") else time.time()

    def start(self) -> None:
        self.service.startService()

    def stop(self, grace: float = 0.0) -> Deferred:
        """Stop reconnecting and drop the connection; Deferred fires when done.

        Flushes already written to the connection go out before it closes.
        With ``grace`` > 0, flushes still queued (Graphite not connected yet,
        or its connection full) get up to ``grace`` seconds to be written
        first: a graceful shutdown's last flush is not thrown away at once."""
        if not self.queue or grace <= 0:
            return defer.maybeDeferred(self.service.stopService)
        written: Deferred = Deferred()
        self._written.append(written)
        give_up = self._clock.callLater(grace, self._give_up, written)

        def stop(_: Any) -> Deferred:
            if give_up.active():
                give_up.cancel()
            # On the next turn: we may be inside ClientService's connection
            # callback, and it refuses a re-entrant stopService.
            return task.deferLater(self._clock, 0, self.service.stopService)
        return written.addCallback(stop)

    def _give_up(self, written: Deferred) -> None:
        if not written.called:
            log.warn("Graphite {address}: {n} flushes not written at shutdown",
                     address=self.address, n=len(self.queue))
            self._written.remove(written)
            written.callback(None)

    @property
    def connected(self) -> bool:
        return self._protocol is not None

    def send(self, payload: bytes) -> None:
        """Queue one flush for Graphite and write what the connection takes."""
        if not payload:
            return
        self.flush_length = len(payload)
        self.queue.append(payload)
        self.queued_bytes += len(payload)
        if len(self.queue) > self.max_queued or self.queued_bytes > self.max_queued_bytes:
            self._write_queued()  # a connection that takes it all needs no drop
            self._drop_oldest()
        else:
            self._write_queued()

    def _drop_oldest(self) -> None:
        dropped = 0
        while self.queue and (len(self.queue) > self.max_queued
                              or self.queued_bytes > self.max_queued_bytes):
            payload = self.queue.popleft()
            self.queued_bytes -= len(payload)
            self.dropped_bytes += len(payload)
            dropped += 1
        if dropped:
            self.dropped += dropped
            ok, _ = self._throttle.allow(self.now())
            if ok:
                log.warn("Graphite {address} unreachable or slow: {dropped} flushes"
                         " ({dropped_bytes} bytes) dropped so far, the oldest first"
                         " (queue: {queued} flushes, {queued_bytes} bytes)",
                         address=self.address, dropped=self.dropped,
                         dropped_bytes=self.dropped_bytes, queued=len(self.queue),
                         queued_bytes=self.queued_bytes)

    def _write_queued(self) -> None:
        protocol = self._protocol
        while protocol is not None and self.queue and not self._paused:
            payload = self.queue.popleft()
            self.queued_bytes -= len(payload)
            protocol.transport.write(payload)
            self.sent += 1
            self.last_flush = self.now()
        if self._written and not self.queue:
            waiting, self._written = self._written, []
            for d in waiting:
                d.callback(None)

    def status(self) -> Iterator[Tuple[str, str, float]]:
        """Etsy's ``graphite.*`` lines for the admin ``stats`` command, and the queue."""
        yield "graphite", "last_flush", self.last_flush
        yield "graphite", "last_exception", self.last_exception
        yield "graphite", "flush_length", self.flush_length
        yield "graphite", "queued_flushes", len(self.queue)
        yield "graphite", "queued_bytes", self.queued_bytes
        yield "graphite", "dropped_flushes", self.dropped

    # connection events (from _GraphiteProtocol)
    def _connected(self, protocol: Protocol) -> None:
        log.info("connected to Graphite {address}", address=self.address)
        self._protocol = protocol
        self._paused = False
        protocol.transport.registerProducer(self, True)
        self._write_queued()

    def _lost(self, protocol: Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
            self.last_exception = self.now()
            log.info("lost Graphite {address}; reconnecting", address=self.address)

    # IPushProducer: the transport's buffer tells us when to hold back
    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._write_queued()

    def stopProducing(self) -> None:
        self._paused = True


class _GraphiteProtocol(Protocol):
    """One connection to Graphite; we only write (Graphite never answers)."""

    def connectionMade(self) -> None:
        self.factory.forwarder._connected(self)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.forwarder._lost(self)


__all__ = ["GraphiteForwarder", "DEFAULT_MAX_QUEUED", "DEFAULT_MAX_QUEUED_BYTES"]
