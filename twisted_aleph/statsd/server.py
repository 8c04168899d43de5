"""The statsd server: a UDP port, its rollup, the flush timer and the flush's outputs.

* :class:`StatsdProtocol` feeds each datagram straight into the server's
  :class:`~twisted_aleph.statsd_protocol.StatsdRollup` (no per-datagram
  stream hop: the rollup itself is the buffer, so the hot path is one parse),
  on a port from :func:`twisted_aleph.udp.listen` (datagrams up to 64 KiB);
  bad lines go to a :class:`~twisted_aleph.peerlog.PeerLog` (one line per
  peer per 10 s at most, never a traceback);
* :class:`StatsdServer` flushes every ``flush_interval`` seconds: it offers
  each :class:`~twisted_aleph.statsd_protocol.Rollup` to its ``rollups``
  Stream, forwards it to Graphite (at most ``max_flush_bytes`` per flush) or,
  without Graphite, logs a one-line summary; ``console=True`` logs every
  value (Etsy's console backend). Both are logged for each flush that saw
  datagrams and the first one after that did not: an idle server is quiet;
* :func:`start_server` builds one, with the admin TCP interface
  (:mod:`.admin`) and the live page (:mod:`.live`) when asked;
* :class:`StatsdService` is the server as a twistd service
  (``twistd -n aleph-statsd``, options in :mod:`twisted_aleph.tap.statsd`).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_aleph import udp
from twisted_aleph.peerlog import LogThrottle, PeerLog
from twisted_aleph.server import ServerService
from twisted_aleph.statsd.graphite import (
    DEFAULT_MAX_QUEUED, DEFAULT_MAX_QUEUED_BYTES, GraphiteForwarder,
)
from twisted_aleph.statsd_protocol import (
    DEFAULT_DELETE_IDLE, DEFAULT_GAUGE_TTL, DEFAULT_MAX_METRICS, DEFAULT_MAX_NAME_BYTES,
    DEFAULT_MAX_STATE_BYTES, AdminSession, GraphiteNames, Rollup, StatsdRollup,
)
from twisted_aleph.statsd_protocol.rollup import Interval
from twisted_aleph.stream import Stream

log = Logger()

DEFAULT_PORT = 10002
#: the admin TCP port of ``twistd aleph-statsd`` (Etsy's default).
DEFAULT_ADMIN_PORT = 8126
#: rollups kept in ``StatsdServer.rollups`` for a reader that lags.
DEFAULT_ROLLUP_BUFFER = 16
#: bytes of Graphite lines one flush sends at most; the rest is counted, not sent.
DEFAULT_MAX_FLUSH_BYTES = 32 * 1024 * 1024
GRAPHITE_DROPPED = "statsd.graphite_dropped_flushes"
ROLLUPS_DROPPED = "statsd.rollups_dropped"
#: Graphite lines left out of flushes by ``max_flush_bytes`` (reported at the next flush).
GRAPHITE_LINES_DROPPED = "statsd.graphite_dropped_lines"
#: a flush making more Graphite lines than this computes them in the thread pool.
DEFAULT_THREADED_FLUSH_LINES = 20_000
#: a flush once computed: (rollup, Graphite payload, lines left out, console text,
#: seconds, to be logged)
Computed = Tuple[Rollup, bytes, int, str, float, bool]


class StatsdProtocol(DatagramProtocol):
    """Parses each datagram into the server's rollup; bad lines to its PeerLog."""

    noisy = False

    def __init__(self, server: "StatsdServer") -> None:
        self.server = server
        self.add_packet = server.rollup.add_packet
        self.peer_log = server.peer_log

    def datagramReceived(self, data: bytes, addr: Tuple[str, int]) -> None:
        if self.add_packet(data):
            self.bad_lines_received(addr)

    def bad_lines_received(self, addr: Tuple[str, int]) -> None:
        """A datagram held bad lines (already counted in ``statsd.bad_lines``):
        tell the peer log, which logs one line per peer per interval at most."""
        self.peer_log.bad_input(addr, "bad line", self.server.rollup.last_bad)


class StatsdServer:
    """A listening statsd port, its rollup, the flush timer and its outputs.

    ``rollups`` is a Stream of :class:`Rollup` (one per flush). Nobody has
    to read it: it keeps ``rollup_buffer`` of them, then skips (and counts in
    ``statsd.rollups_dropped``) flushes until its reader catches up. The
    live page, when served, is its reader.

    ``rollup`` options (``max_metrics``, ``max_state_bytes``,
    ``max_name_bytes``, ``delete_idle``, ``gauge_ttl``, ``histograms``,
    ``stats_prefix``) are :class:`StatsdRollup`'s; ``names`` (default:
    ``GraphiteNames(prefix)``) places the figures in Graphite.
    """

    def __init__(self, *, flush_interval: float = 1.0,
                 percentiles: Sequence[float] = (90,),
                 graphite: Optional[GraphiteForwarder] = None,
                 prefix: str = "stats", clock: Any = None,
                 rollup_buffer: int = DEFAULT_ROLLUP_BUFFER,
                 names: Optional[GraphiteNames] = None,
                 max_flush_bytes: int = DEFAULT_MAX_FLUSH_BYTES,
                 console: bool = False,
                 max_metrics: int = DEFAULT_MAX_METRICS,
                 max_state_bytes: int = DEFAULT_MAX_STATE_BYTES,
                 max_name_bytes: int = DEFAULT_MAX_NAME_BYTES,
                 delete_idle: Sequence[str] = tuple(DEFAULT_DELETE_IDLE),
                 gauge_ttl: int = DEFAULT_GAUGE_TTL,
                 histograms: Sequence[Tuple[str, Sequence[float]]] = (),
                 stats_prefix: str = "statsd",
                 threaded_flush_lines: int = DEFAULT_THREADED_FLUSH_LINES) -> None:
        if clock is None:
            from twisted.internet import reactor as clock  # type: ignore[no-redef]
        if flush_interval <= 0:
            raise ValueError("flush_interval must be > 0")
        if max_flush_bytes < 1:
            raise ValueError("max_flush_bytes must be >= 1")
        self.flush_interval = flush_interval
        self.clock = clock
        self.names = (names if names is not None else GraphiteNames(prefix)).check()
        self.prefix = self.names.prefix
        self.graphite = graphite
        self.max_flush_bytes = max_flush_bytes
        self.console = console
        self.rollup = StatsdRollup(
            percentiles, max_metrics=max_metrics, max_state_bytes=max_state_bytes,
            max_name_bytes=max_name_bytes, delete_idle=delete_idle, gauge_ttl=gauge_ttl,
            histograms=histograms, stats_prefix=stats_prefix)
        self.peer_log = PeerLog("aleph-statsd", clock=clock, logger=log)
        self.admin = AdminSession(self.rollup, started=clock.seconds(),
                                  status=self._backend_status, config={
                                      "flush_interval": flush_interval,
                                      "graphite": graphite.address if graphite else None,
                                      "percentiles": self.rollup.percentiles,
                                      "prefix": self.names.prefix,
                                      "prefix_counter": self.names.counter,
                                      "prefix_timer": self.names.timer,
                                      "prefix_gauge": self.names.gauge,
                                      "prefix_set": self.names.set,
                                      "prefix_stats": stats_prefix,
                                      "suffix": self.names.suffix,
                                      "delete_idle": sorted(self.rollup.delete_idle),
                                      "gauge_ttl": self.rollup.gauge_ttl,
                                      "max_metrics": max_metrics,
                                      "max_state_bytes": max_state_bytes,
                                      "max_name_bytes": max_name_bytes,
                                      "max_flush_bytes": max_flush_bytes,
                                      "console": console})
        self.rollups = Stream(rollup_buffer, description="statsd rollups")
        self.rollups_dropped = 0
        self.graphite_lines_dropped = 0
        #: seconds the last flush took (rolling up and rendering), for the summary
        self.last_flush_seconds = 0.0
        self.listening_port: Any = None
        #: the admin and live-page servers started with this one (closed with it)
        self.attached: List[Any] = []
        self._rollups_waiting = False
        self._seen: Dict[str, int] = {}  # drop totals already reported, by counter
        self._drop_log = LogThrottle(10.0)
        self._idle = True
        #: flushes bigger than this many Graphite lines compute in the thread pool
        self.threaded_flush_lines = threaded_flush_lines
        self._reactor: Any = None
        self._chain: Deferred = defer.succeed(None)  # flushes computing, in order
        self._computing = 0
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
        self._reactor = reactor
        self.listening_port = udp.listen(reactor, port, StatsdProtocol(self), interface)
        if self.graphite is not None:
            self.graphite.start()
        else:
            log.info("statsd: no Graphite (--graphite host:port forwards flushes): each flush"
                     " that saw datagrams logs a summary" + (", and its values"
                                                           if self.console else ""))
        self._schedule()
        return self

    def attach(self, server: Any) -> None:
        """Close ``server`` (anything with ``close()``) when this one closes."""
        self.attached.append(server)

    def _schedule(self) -> None:
        self._timer = self.clock.callLater(self.flush_interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self._flush_on_timer()
        except Exception:
            log.failure("statsd flush failed")
        self._schedule()

    def _since_last(self, counter: str, total: int) -> float:
        """How much ``total`` grew since the last flush reported ``counter``."""
        before = self._seen.get(counter, 0)
        self._seen[counter] = total
        return float(total - before)

    def flush(self) -> Rollup:
        """Roll up what arrived since the last flush, publish it, start afresh
        (all of it now, on this thread: what the flush timer does in the
        thread pool for a big interval, see ``threaded_flush_lines``)."""
        return self._deliver(self._compute(*self._swap()))

    def _flush_on_timer(self) -> None:
        """A flush from the timer: a big one (over ``threaded_flush_lines``
        Graphite lines) computes its timer statistics and Graphite lines in
        the reactor's thread pool, so the reactor keeps reading datagrams;
        flushes are delivered in order, one computed at a time."""
        taken, busy = self._swap()
        pool = getattr(self._reactor, "getThreadPool", None)
        if self._computing or (pool is not None and taken.lines > self.threaded_flush_lines):
            self._computing += 1
            if pool is not None and taken.lines > self.threaded_flush_lines:
                def compute(_: Any) -> Deferred:
                    return threads.deferToThreadPool(self._reactor, pool(), self._compute,
                                                     taken, busy)
            else:
                def compute(_: Any) -> Deferred:
                    return defer.succeed(self._compute(taken, busy))
            self._chain.addCallback(compute).addCallback(self._deliver).addErrback(
                self._flush_failed).addBoth(self._computed)
        else:
            self._deliver(self._compute(taken, busy))

    @staticmethod
    def _flush_failed(failure: Failure) -> None:
        log.failure("statsd flush failed", failure)

    def _computed(self, _: Any) -> None:
        self._computing -= 1

    def _swap(self) -> Tuple[Interval, bool]:
        """Take the interval from the rollup (on the reactor thread: cheap), and
        whether it is to be logged (it saw datagrams, or is the first idle one
        after some)."""
        rollup_state = self.rollup
        p = rollup_state.stats_prefix
        extra: Dict[str, float] = {
            f"{p}.rollups_dropped": self._since_last(ROLLUPS_DROPPED, self.rollups_dropped)}
        if self.graphite is not None:
            extra[f"{p}.graphite_dropped_flushes"] = self._since_last(
                GRAPHITE_DROPPED, self.graphite.dropped)
            extra[f"{p}.graphite_dropped_lines"] = self._since_last(
                GRAPHITE_LINES_DROPPED, self.graphite_lines_dropped)
        packets = rollup_state.packets
        now = self.clock.seconds()
        self.admin.flushed(now, packets)
        busy = bool(packets) or not self._idle
        self._idle = not packets
        return rollup_state.swap(now, self.flush_interval, extra), busy

    def _compute(self, taken: Interval, busy: bool) -> Computed:
        """The costly part of a flush, any thread: (rollup, Graphite payload,
        lines left out of it, console text, seconds it took, logged?)."""
        started = time.perf_counter()
        rollup = taken.rollup()
        payload, left_out = b"", 0
        if self.graphite is not None:
            payload, left_out = rollup.graphite_payload(self.names, self.max_flush_bytes)
        console = rollup.console_text(self.names) if self.console and busy else ""
        return rollup, payload, left_out, console, time.perf_counter() - started, busy

    def _deliver(self, computed: Computed) -> Rollup:
        """Publish a computed flush, send it, log it (on the reactor thread)."""
        rollup, payload, left_out, console, seconds, busy = computed
        rollup_state = self.rollup
        p = rollup_state.stats_prefix
        if self.graphite is not None:
            self.graphite.send(payload)
            if left_out:
                self.graphite_lines_dropped += left_out
                self._log_drop("statsd: a flush's Graphite lines are over --max-flush-bytes"
                               " ({max} bytes): {n} lines left out", max=self.max_flush_bytes,
                               n=left_out)
        self._publish(rollup)  # last: a reader may run at once, and see the rest done
        self.last_flush_seconds = seconds
        new = rollup.internal.get(f"{p}.dropped_new_metrics", 0.0)
        values = rollup.internal.get(f"{p}.dropped_values", 0.0)
        if new or values:
            self._log_drop("statsd: at the caps ({series} series, {bytes} bytes of state):"
                           " {new} new metrics (such as {example!r}) and {values} values"
                           " dropped in this flush", series=rollup_state.max_metrics,
                           bytes=rollup_state.max_state_bytes, new=int(new),
                           example=rollup_state.last_dropped, values=int(values))
        if self.graphite is None and busy:
            log.info("statsd flush: {summary} in {ms:.1f} ms", summary=rollup.summary(),
                     ms=seconds * 1000)
        if console:
            log.info("statsd flush at {ts}:\n{values}", ts=int(rollup.timestamp),
                     values=console)
        return rollup

    def _log_drop(self, fmt: str, **kwargs: Any) -> None:
        ok, _ = self._drop_log.allow(self.clock.seconds())
        if ok:
            log.warn(fmt, **kwargs)

    def _backend_status(self) -> Iterator[Tuple[str, str, float]]:
        if self.graphite is not None:
            yield from self.graphite.status()
        yield "flush", "time_ms", round(self.last_flush_seconds * 1000, 3)
        yield "flush", "graphite_dropped_lines", self.graphite_lines_dropped

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
        (giving that last flush up to ``grace`` seconds to be written to it),
        close the admin port and the live page. Always graceful (``graceful``
        is there for :class:`~twisted_aleph.server.ServerService`, which asks
        every server for a graceful close)."""
        if self._closed is not None:
            return self._closed
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waits: List[Deferred] = []
        if self.listening_port is not None:
            waits.append(defer.maybeDeferred(self.listening_port.stopListening))
        last_flush = self.listening_port is not None

        def finish(_: Any) -> Deferred:
            """Once the flushes in the thread pool are delivered: the last one."""
            if last_flush:
                self.flush()
            self.rollups.close()
            stops = []
            if self.graphite is not None:
                stops.append(self.graphite.stop(grace))
            for server in self.attached:
                stops.append(defer.maybeDeferred(server.close))
            return defer.gatherResults(stops, consumeErrors=True)
        waits.append(self._chain.addCallback(finish))
        self._closed = defer.gatherResults(waits, consumeErrors=True).addCallback(
            lambda _: None)
        return self._closed


def parse_address(text: str, default_port: int = 2003) -> Tuple[str, int]:
    """``host:port`` (or ``host``, or ``[v6]:port``) as a (host, port) pair."""
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad address {text!r}, want host:port")
    return host, int(port)


def start_server(port: int = DEFAULT_PORT, *, interface: str = "0.0.0.0",
                 flush_interval: float = 1.0, graphite: Optional[str] = None,
                 percentiles: Sequence[float] = (90,), prefix: str = "stats",
                 names: Optional[GraphiteNames] = None,
                 max_queued: int = DEFAULT_MAX_QUEUED,
                 max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 max_flush_bytes: int = DEFAULT_MAX_FLUSH_BYTES,
                 console: bool = False,
                 admin_port: Optional[int] = None, admin_interface: str = "127.0.0.1",
                 admin_options: Optional[Dict[str, Any]] = None,
                 http_port: Optional[int] = None, http_interface: str = "127.0.0.1",
                 live_options: Optional[Dict[str, Any]] = None,
                 clock: Any = None, reactor: Any = None,
                 **rollup_options: Any) -> StatsdServer:
    """Listen for statsd on UDP ``port``; flush every ``flush_interval`` s.

    ``graphite="host:port"`` forwards every flush there (reconnecting, at
    most ``max_flush_bytes`` per flush, a queue of ``max_queued`` flushes and
    ``max_queued_bytes`` while it is away); without it each busy flush logs a
    summary line, and ``console=True`` logs the values. ``admin_port``:
    Etsy's admin TCP interface on ``admin_interface`` (options:
    :func:`twisted_aleph.statsd.admin.listen_admin`'s). ``http_port``: the
    live page (options: :class:`twisted_aleph.statsd.live.LiveFeed`'s), which
    then reads ``server.rollups``; otherwise rollups are readable there.
    ``rollup_options`` are :class:`StatsdServer`'s (the rollup's bounds and
    lifetimes). Raises ``CannotListenError`` if a port is taken. ``reactor``
    listens (and connects to Graphite); ``clock`` times the flushes, the
    Graphite retries and the admin timeouts (default: ``reactor``).
    """
    if clock is None:
        clock = reactor
    forwarder = None
    if graphite is not None:
        host, gport = parse_address(graphite)
        forwarder = GraphiteForwarder(host, gport, max_queued=max_queued,
                                      max_queued_bytes=max_queued_bytes,
                                      reactor=reactor, clock=clock)
    server = StatsdServer(flush_interval=flush_interval, percentiles=percentiles,
                          graphite=forwarder, prefix=prefix, names=names, clock=clock,
                          max_flush_bytes=max_flush_bytes, console=console, **rollup_options)
    server.listen(port, interface, reactor)
    try:
        if admin_port is not None:
            from twisted_aleph.statsd.admin import listen_admin
            admin = listen_admin(server.admin, admin_port, interface=admin_interface,
                                 reactor=reactor, clock=clock, **(admin_options or {}))
            server.attach(admin)
            log.info("statsd admin interface on TCP {interface}:{port}",
                     interface=admin_interface, port=admin.port)
        if http_port is not None:
            from twisted_aleph.statsd.live import serve_live
            live = serve_live(server, http_port, interface=http_interface, reactor=reactor,
                              **(live_options or {}))
            server.attach(live)
            log.info("statsd live page on http://{interface}:{port}/",
                     interface=http_interface, port=live.port)
    except BaseException:
        server.close()
        raise
    return server


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


__all__ = [
    "StatsdProtocol", "StatsdServer", "StatsdService", "start_server", "parse_address",
    "DEFAULT_PORT", "DEFAULT_ADMIN_PORT", "DEFAULT_ROLLUP_BUFFER", "DEFAULT_MAX_FLUSH_BYTES",
    "GRAPHITE_DROPPED", "ROLLUPS_DROPPED", "GRAPHITE_LINES_DROPPED",
]
