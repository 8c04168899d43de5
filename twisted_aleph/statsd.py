"""A statsd server (Etsy's line protocol) on ``DatagramProtocol``, with Graphite.

The Twisted glue around :mod:`twisted_aleph.statsd_protocol`, which does all
parsing and rolling up:

* :class:`StatsdProtocol` feeds each datagram straight into a
  :class:`~twisted_aleph.statsd_protocol.StatsdRollup` (no per-datagram
  stream hop: the rollup itself is the buffer, so the hot path is one parse),
  on a port from :func:`twisted_aleph.udp.listen` (datagrams up to 64 KiB);
* :class:`StatsdServer` flushes the rollup every ``flush_interval`` seconds,
  offers each :class:`~twisted_aleph.statsd_protocol.Rollup` to its
  ``rollups`` Stream and forwards it to Graphite;
* :class:`GraphiteForwarder` writes Graphite's plaintext protocol over a
  reconnecting TCP client (``ClientService``). While Graphite is down, up to
  ``max_queued`` flushes wait; past that the oldest are dropped and counted;
* :class:`StatsdService` is the server as a twistd service, which
  ``twistd -n aleph-statsd`` runs (options: :mod:`twisted_aleph.tap.statsd`).
  Stopping (SIGTERM) flushes once more and gives that flush up to
  ``--shutdown-timeout`` seconds to reach Graphite.

Graphite names (Etsy's): ``stats.counters.<name>.count`` and ``.rate`` (per
second), ``stats.gauges.<name>``, ``stats.timers.<name>.<stat>`` (count,
count_ps, sum, mean, lower, upper, median, upper_90, mean_90, sum_90,
count_90), ``stats.sets.<name>.count``; the server's own counters are
``statsd.packets_received``, ``statsd.metrics_received``, ``statsd.bad_lines``,
``statsd.rollups_dropped`` and ``statsd.graphite_dropped_flushes`` (under
``stats.counters.`` like any counter). ``--prefix`` replaces ``stats``.

Bad lines are counted in the ``statsd.bad_lines`` counter and logged at most
once per 10 s (with the number held back), so a flood of garbage never floods
the log. Nothing a client sends can stop the server.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from twisted_aleph import udp
from twisted_aleph.server import ServerService
from twisted_aleph.statsd_protocol import (
    COUNTER, GAUGE, SET, TIMER, Rollup, StatsdRollup, format_metric,
)
from twisted_aleph.stream import Stream

log = Logger()

DEFAULT_PORT = 10002
#: flushes kept for Graphite while it is unreachable.
DEFAULT_MAX_QUEUED = 1000
#: rollups kept in ``StatsdServer.rollups`` for a reader that lags.
DEFAULT_ROLLUP_BUFFER = 16
GRAPHITE_DROPPED = "statsd.graphite_dropped_flushes"
ROLLUPS_DROPPED = "statsd.rollups_dropped"


class StatsdProtocol(DatagramProtocol):
    """Parses each datagram into the server's rollup; logs bad lines (throttled)."""

    def __init__(self, server: "StatsdServer") -> None:
        self.server = server
        self.add_packet = server.rollup.add_packet
        self._throttle = udp.LogThrottle(10.0)

    def datagramReceived(self, data: bytes, addr: Tuple[str, int]) -> None:
        if self.add_packet(data):
            self.bad_lines_received(addr)

    def bad_lines_received(self, addr: Tuple[str, int]) -> None:
        """A datagram held bad lines (already counted): log, at most every 10 s."""
        ok, suppressed = self._throttle.allow(self.server.clock.seconds())
        if ok:
            more = (f" ({suppressed} more bad datagrams since the last report)"
                    if suppressed else "")
            log.warn("statsd: bad line from {host}:{port}: {error}{more}",
                     host=addr[0], port=addr[1], error=self.server.rollup.last_bad,
                     more=more, suppressed=suppressed)


@implementer(IPushProducer)
class GraphiteForwarder:
    """Sends flushes to Graphite's plaintext port, queueing while it is away.

    ``send(payload)`` queues one flush (bytes of ``name value ts\\n`` lines);
    queued flushes are written whenever a connection is up and its transport
    is not asking us to pause. ``dropped`` counts flushes discarded, oldest
    first, because more than ``max_queued`` were waiting. A flush written to
    a connection that then breaks is lost with it (TCP gives no receipt).
    """

    def __init__(self, host: str, port: int, *, max_queued: int = DEFAULT_MAX_QUEUED,
                 reactor: Any = None, endpoint: Any = None,
                 retry_policy: Any = None, clock: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        if endpoint is None:
            endpoint = HostnameEndpoint(reactor, host, port)
        self.address = f"{host}:{port}"
        self.max_queued = max_queued
        self.queue: Deque[bytes] = deque()
        self.dropped = 0
        self.sent = 0
        self._protocol: Optional[Protocol] = None
        self._paused = False
        self._clock = clock if clock is not None else reactor
        self._written: List[Deferred] = []  # stop() waiting for the queue to be written
        factory = Factory.forProtocol(_GraphiteProtocol)
        factory.forwarder = self  # type: ignore[attr-defined]
        factory.noisy = False
        self.service = ClientService(
            endpoint, factory,
            retryPolicy=retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=30.0),
            clock=clock if clock is not None else reactor)

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
        if len(self.queue) >= self.max_queued:
            self.queue.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warn("Graphite {address} unreachable: {dropped} flushes dropped",
                         address=self.address, dropped=self.dropped)
        self.queue.append(payload)
        self._write_queued()

    def _write_queued(self) -> None:
        protocol = self._protocol
        while protocol is not None and self.queue and not self._paused:
            protocol.transport.write(self.queue.popleft())  # type: ignore[union-attr]
            self.sent += 1
        if self._written and not self.queue:
            waiting, self._written = self._written, []
            for d in waiting:
                d.callback(None)

    # connection events (from _GraphiteProtocol)
    def _connected(self, protocol: Protocol) -> None:
        log.info("connected to Graphite {address}", address=self.address)
        self._protocol = protocol
        self._paused = False
        protocol.transport.registerProducer(self, True)  # type: ignore[union-attr]
        self._write_queued()

    def _lost(self, protocol: Protocol) -> None:
        if self._protocol is protocol:
            self._protocol = None
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


class StatsdServer:
    """A listening statsd port, its rollup, the flush timer and its outputs.

    ``rollups`` is a Stream of :class:`Rollup` (one per flush). Nobody has
    to read it: it keeps ``rollup_buffer`` of them, then skips (and counts in
    ``statsd.rollups_dropped``) flushes until its reader catches up.
    """

    def __init__(self, *, flush_interval: float = 1.0,
                 percentiles: Sequence[float] = (90,),
                 graphite: Optional[GraphiteForwarder] = None,
                 prefix: str = "stats", clock: Any = None,
                 rollup_buffer: int = DEFAULT_ROLLUP_BUFFER) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        self.flush_interval = flush_interval
        self.clock = clock
        self.prefix = prefix
        self.graphite = graphite
        self.rollup = StatsdRollup(percentiles)
        self.rollups = Stream(rollup_buffer, description="statsd rollups")
        self.rollups_dropped = 0
        self.listening_port: Any = None
        self._rollups_waiting = False
        self._rollups_dropped_seen = 0
        self._graphite_dropped_seen = 0
        self._timer: Any = None
        self._closed: Optional[Deferred] = None

    def __repr__(self) -> str:
        port = self.port if self.listening_port is not None else None
        return f"<StatsdServer port={port} flush_interval={self.flush_interval}>"

    @property
    def port(self) -> int:
        """The UDP port actually bound (useful after asking for port 0)."""
        return self.listening_port.getHost().port

    def listen(self, port: int = DEFAULT_PORT, interface: str = "0.0.0.0",
               reactor: Any = None) -> "StatsdServer":
        """Bind the UDP port, start flushing (and forwarding, if configured)."""
        if reactor is None:
            from twisted.internet import reactor  # type: ignore[no-redef]
        self.listening_port = udp.listen(reactor, port, StatsdProtocol(self), interface)
        if self.graphite is not None:
            self.graphite.start()
        self._schedule()
        return self

    def _schedule(self) -> None:
        self._timer = self.clock.callLater(self.flush_interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.flush()
        except Exception:
            log.failure("statsd flush failed")
        self._schedule()

    def flush(self) -> Rollup:
        """Roll up what arrived since the last flush, publish it, start afresh."""
        dropped = self.rollups_dropped
        extra: Dict[str, float] = {
            ROLLUPS_DROPPED: float(dropped - self._rollups_dropped_seen)}
        self._rollups_dropped_seen = dropped
        if self.graphite is not None:
            dropped = self.graphite.dropped
            extra[GRAPHITE_DROPPED] = float(dropped - self._graphite_dropped_seen)
            self._graphite_dropped_seen = dropped
        rollup = self.rollup.flush(self.clock.seconds(), self.flush_interval, extra)
        self._publish(rollup)
        if self.graphite is not None:
            self.graphite.send(rollup.graphite_lines(self.prefix))
        return rollup

    def _publish(self, rollup: Rollup) -> None:
        if self._rollups_waiting:
            self.rollups_dropped += 1
            return
        r = self.rollups.offer(rollup)
        if r is True or r is False:
            return
        self._rollups_waiting = True
        r.addBoth(self._rollup_taken)

    def _rollup_taken(self, _: Any) -> None:
        self._rollups_waiting = False

    def close(self, grace: float = 0.0, *, graceful: bool = True) -> Deferred:
        """Stop listening, flush one last time, close ``rollups``, stop Graphite
        (giving that last flush up to ``grace`` seconds to be written to it).
        Always graceful (``graceful`` is there for :class:`~twisted_aleph.
        server.ServerService`, which asks every server for a graceful close)."""
        if self._closed is not None:
            return self._closed
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waits: List[Deferred] = []
        if self.listening_port is not None:
            waits.append(defer.maybeDeferred(self.listening_port.stopListening))
            self.flush()
        self.rollups.close()
        if self.graphite is not None:
            waits.append(self.graphite.stop(grace))
        self._closed = defer.gatherResults(waits, consumeErrors=True).addCallback(
            lambda _: None)
        return self._closed


def parse_address(text: str, default_port: int = 2003) -> Tuple[str, int]:
    """``host:port`` (or ``host``, or ``[v6]:port``) as a (host, port) pair."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {text!r}, want host:port")
    return host, int(port)


def start_server(port: int = DEFAULT_PORT, *, interface: str = "0.0.0.0",
                 flush_interval: float = 1.0, graphite: Optional[str] = None,
                 percentiles: Sequence[float] = (90,), prefix: str = "stats",
                 max_queued: int = DEFAULT_MAX_QUEUED, clock: Any = None,
                 reactor: Any = None) -> StatsdServer:
    """Listen for statsd on UDP ``port``; flush every ``flush_interval`` s.

    ``graphite="host:port"`` forwards every flush there (reconnecting); the
    rollups are always readable from ``server.rollups``. Raises
    ``CannotListenError`` if the port is taken. ``reactor`` listens (and
    connects to Graphite); ``clock`` times the flushes and the Graphite
    retries (default: ``reactor``).
    """
    if clock is None:
        clock = reactor
    forwarder = None
    if graphite is not None:
        host, gport = parse_address(graphite)
        forwarder = GraphiteForwarder(host, gport, max_queued=max_queued,
                                      reactor=reactor, clock=clock)
    server = StatsdServer(flush_interval=flush_interval, percentiles=percentiles,
                          graphite=forwarder, prefix=prefix, clock=clock)
    return server.listen(port, interface, reactor)


class StatsdClient:
    """Sends statsd lines over a :mod:`twisted_aleph.udp` socket.

    Each method returns the put's Deferred (fires when the datagram is sent).
    """

    def __init__(self, socket: Any, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT) -> None:
        self.socket = socket
        self.host = host
        self.port = port

    def send(self, line: str) -> Deferred:
        return self.socket.put({"host": self.host, "port": self.port, "message": line})

    def increment(self, name: str, value: float = 1, rate: float = 1.0) -> Deferred:
        return self.send(format_metric(name, value, COUNTER, rate))

    def gauge(self, name: str, value: Any) -> Deferred:
        """Set a gauge; a string such as ``"+3"`` or ``"-1"`` is a delta."""
        return self.send(format_metric(name, value, GAUGE))

    def timing(self, name: str, millis: float, rate: float = 1.0) -> Deferred:
        return self.send(format_metric(name, millis, TIMER, rate))

    def unique(self, name: str, member: str) -> Deferred:
        """Add ``member`` to the set ``name`` (counted once per flush)."""
        return self.send(format_metric(name, str(member), SET))

    def close(self) -> None:
        self.socket.close()


def client(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Deferred:
    """Deferred[:class:`StatsdClient`] sending to ``host:port``."""
    interface = "::" if ":" in host else "0.0.0.0"
    return udp.socket(0, interface=interface).addCallback(
        lambda sock: StatsdClient(sock, host, port))


class StatsdService(ServerService):
    """``start_server`` as a twistd service (``twistd aleph-statsd``).

    Stopping it (twistd on SIGTERM) flushes the accumulator once more and
    gives that flush up to ``shutdown_timeout`` seconds to reach Graphite.
    ``gc_threshold``, if not 0, tunes the garbage collector once listening
    (:func:`twisted_aleph.server.tune_gc`), until stopped. ``options`` are
    ``start_server``'s.
    """

    listening_line = "statsd listening on UDP {port}"

    def __init__(self, port: int = DEFAULT_PORT, *, shutdown_timeout: float = 10.0,
                 gc_threshold: int = 0, **options: Any) -> None:
        super().__init__(self._listen, name="aleph-statsd",
                         interface=options.get("interface", "0.0.0.0"),
                         shutdown_timeout=shutdown_timeout, gc_threshold=gc_threshold)
        self.port = port
        self.options = options

    def _listen(self) -> StatsdServer:
        return start_server(self.port, **self.options)


def __getattr__(name: str) -> Any:
    """The twistd command's ``Options`` and ``makeService``, moved to
    :mod:`twisted_aleph.tap.statsd`: still found here for one release, with a
    DeprecationWarning."""
    if name in ("Options", "makeService"):
        from twisted_aleph.tap import statsd as tap_statsd
        warnings.warn(f"twisted_aleph.statsd.{name} moved to twisted_aleph.tap.statsd.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(tap_statsd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "StatsdProtocol", "StatsdServer", "GraphiteForwarder", "StatsdClient",
    "StatsdService", "start_server", "client",
    "parse_address", "Rollup", "StatsdRollup",
]
