"""Tests for twisted_aleph.statsd: the server glue, Graphite forwarding, twistd."""

from __future__ import annotations

import os
import shutil
from typing import Any, List

from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.internet.testing import StringTransport
from twisted.internet.utils import getProcessOutput
from twisted.python import usage
from twisted.trial import unittest

from twisted_aleph import statsd
from twisted_aleph import udp
from twisted_aleph.statsd import server as statsd_server
from twisted_aleph.tap import statsd as tap_statsd
from twisted_aleph.statsd_protocol import BAD_LINES, PACKETS_RECEIVED, Rollup


def open_server(test: unittest.TestCase, **kwargs: Any) -> statsd.StatsdServer:
    kwargs.setdefault("interface", "127.0.0.1")
    server = statsd.start_server(0, **kwargs)
    test.addCleanup(server.close)
    return server


class ReactorWithOwnClock(task.Clock):
    """The real reactor's UDP, with timers of its own (a task.Clock)."""

    def listenUDP(self, *args: Any, **kwargs: Any) -> Any:
        return reactor.listenUDP(*args, **kwargs)  # type: ignore[attr-defined]


class ReactorAndClockTests(unittest.TestCase):
    def test_the_given_reactor_times_the_flushes(self) -> None:
        given = ReactorWithOwnClock()
        server = open_server(self, flush_interval=3.0, reactor=given)
        self.assertIs(server.clock, given)
        self.assertEqual([c.getTime() for c in given.getDelayedCalls()], [3.0])

    def test_the_given_clock_times_flushes_and_graphite_retries(self) -> None:
        clock = task.Clock()
        server = open_server(self, graphite="127.0.0.1:1", clock=clock)
        self.assertIs(server.clock, clock)
        self.assertIs(server.graphite._clock, clock)


class ClockedServerTests(unittest.TestCase):
    """Flushes driven by task.Clock; datagrams fed to the protocol in memory."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.server = open_server(self, flush_interval=10.0, clock=self.clock)
        self.protocol = self.server.listening_port.protocol

    def feed(self, *packets: bytes) -> None:
        for p in packets:
            self.protocol.datagramReceived(p, ("10.1.2.3", 4567))

    @defer.inlineCallbacks
    def test_rollup_every_flush_interval(self) -> Any:
        self.feed(b"hits:1|c\nhits:1|c|@0.5", b"rt:10|ms\nrt:30|ms", b"g:3|g", b"u:x|s")
        pending = self.server.rollups.take()
        self.clock.advance(9.9)
        self.assertFalse(pending.called)
        self.clock.advance(0.1)
        rollup = yield pending
        self.assertIsInstance(rollup, Rollup)
        self.assertEqual(rollup.timestamp, 10.0)
        self.assertEqual(rollup.interval, 10.0)

    @defer.inlineCallbacks
    def test_rollup_contents(self) -> Any:
        self.feed(b"hits:1|c\nhits:1|c|@0.5", b"rt:10|ms\nrt:30|ms", b"g:3|g", b"u:x|s")
        self.clock.advance(10)
        rollup = yield self.server.rollups.take()
        self.assertEqual(rollup.counters["hits"], 3.0)
        self.assertEqual(rollup.timers["rt"]["mean"], 20.0)
        self.assertEqual(rollup.gauges, {"g": 3.0})
        self.assertEqual(rollup.sets, {"u": 1})
        self.assertEqual(rollup.counters[PACKETS_RECEIVED], 4.0)
        self.feed(b"hits:5|c")
        self.clock.advance(10)
        second = yield self.server.rollups.take()
        self.assertEqual(second.counters["hits"], 5.0)
        self.assertEqual(second.timestamp, 20.0)

    @defer.inlineCallbacks
    def test_garbage_is_counted_never_fatal(self) -> Any:
        noise = bytes(range(256)) * 240  # 60 KB, not UTF-8, with newlines
        self.feed(b"garbage", b"a:", b"a:1|zz", b":1|c", b"\xff\xfe", noise,
                  b"ok:1|c\ngarbage\nok:1|c")
        self.clock.advance(10)
        rollup = yield self.server.rollups.take()
        self.assertEqual(rollup.counters["ok"], 2.0)
        self.assertGreaterEqual(rollup.counters[BAD_LINES], 7.0)
        self.assertFalse(self.server.rollups.is_closed)

    def test_bad_line_log_is_throttled(self) -> None:
        logged: List[dict] = []
        # bad lines go through the server's PeerLog (twisted_aleph.peerlog), which
        # logs with the statsd server module's logger
        self.patch(statsd_server.log, "warn", lambda fmt, **kw: logged.append(kw))
        for _ in range(100):
            self.feed(b"garbage")
        self.assertEqual(len(logged), 1)
        self.assertIn("garbage", str(logged[0]["detail"]))
        self.clock.advance(10.0)
        self.feed(b"more:garbage")
        self.assertEqual(len(logged), 2)
        self.assertEqual(logged[1]["held_back"], 99)
        self.assertEqual(logged[1]["peer"], "10.1.2.3")

    @defer.inlineCallbacks
    def test_unread_rollups_are_bounded_and_counted(self) -> Any:
        for _ in range(statsd.DEFAULT_ROLLUP_BUFFER + 5):
            self.clock.advance(10)
        kept: List[Rollup] = []
        for _ in range(statsd.DEFAULT_ROLLUP_BUFFER + 1):
            rollup = yield self.server.rollups.take()
            kept.append(rollup)
        self.assertEqual(self.server.rollups_dropped, 4)
        self.assertEqual(kept[-1].counters[statsd.ROLLUPS_DROPPED], 0.0)
        self.clock.advance(10)
        after = yield self.server.rollups.take()
        # a counter like any other: drops since the previous flush
        self.assertEqual(after.counters[statsd.ROLLUPS_DROPPED], 1.0)

    @defer.inlineCallbacks
    def test_close_flushes_once_more_and_stops(self) -> Any:
        self.feed(b"last:1|c")
        yield self.server.close()
        rollup = yield self.server.rollups.take()
        self.assertEqual(rollup.counters["last"], 1.0)
        end = yield self.server.rollups.take("end")
        self.assertEqual(end, "end")
        self.assertEqual(self.clock.getDelayedCalls(), [])


class RealUDPTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_round_trip_through_a_real_socket(self) -> Any:
        server = open_server(self, flush_interval=0.02)
        client = yield statsd.client("127.0.0.1", server.port)
        self.addCleanup(lambda: (client.close(), client.socket.when_closed())[1])
        yield client.increment("hits", 2)
        yield client.increment("hits", 1, rate=0.5)
        yield client.send("garbage")
        yield client.timing("rt", 12.5)
        yield client.gauge("temp", 20)
        yield client.gauge("temp", "-3")
        yield client.unique("users", "bob")
        seen: dict = {"hits": 0.0, "bad": 0.0, "rt": 0, "packets": 0.0}
        while seen["packets"] < 7:
            rollup = yield server.rollups.take()
            seen["hits"] += rollup.counters.get("hits", 0.0)
            seen["bad"] += rollup.counters[BAD_LINES]
            seen["packets"] += rollup.counters[PACKETS_RECEIVED]
            seen["rt"] += rollup.timers.get("rt", {}).get("count", 0)
            if "temp" in rollup.gauges:
                seen["temp"] = rollup.gauges["temp"]
            if "users" in rollup.sets:
                seen["users"] = rollup.sets["users"]
        self.assertEqual(seen, {"hits": 4.0, "bad": 1.0, "rt": 1.0, "packets": 7.0,
                                "temp": 17.0, "users": 1})


class GraphiteSink(Protocol):
    """An in-test Graphite: collects lines, fires ``factory.wanted`` on a match."""

    def connectionMade(self) -> None:
        self.factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self.factory.received += data
        for line, d in list(self.factory.wanted.items()):
            if line in self.factory.received:
                del self.factory.wanted[line]
                d.callback(self.factory.received)


class GraphiteForwardingTests(unittest.TestCase):
    def listen_graphite(self) -> Any:
        factory = Factory.forProtocol(GraphiteSink)
        factory.received = b""
        factory.wanted = {}
        factory.connections = []
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: [c.transport.loseConnection() for c in factory.connections])
        return factory, port.getHost().port

    @defer.inlineCallbacks
    def test_flushes_reach_graphite_over_tcp(self) -> Any:
        graphite, gport = self.listen_graphite()
        arrived: Deferred = Deferred()
        graphite.wanted[b"stats.counters.hits.count 3 "] = arrived
        server = open_server(self, flush_interval=0.02, graphite=f"127.0.0.1:{gport}")
        client = yield statsd.client("127.0.0.1", server.port)
        self.addCleanup(lambda: (client.close(), client.socket.when_closed())[1])
        yield client.increment("hits", 3)
        received = yield arrived
        for line in received.decode().splitlines():
            name, value, ts = line.split(" ")
            self.assertTrue(name.startswith("stats."))
            float(value)
            self.assertTrue(ts.isdigit())
        self.assertTrue(server.graphite.connected)


class FakeEndpoint:
    """A Graphite that is down (refuses) or up (StringTransport) on demand."""

    def __init__(self) -> None:
        self.up = False
        self.transports: List[StringTransport] = []
        self.protocols: List[Protocol] = []

    def connect(self, factory: Any) -> Deferred:
        if not self.up:
            return defer.fail(ConnectionRefusedError("graphite is down"))
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.transports.append(transport)
        self.protocols.append(protocol)
        return defer.succeed(protocol)


class GraphiteDownTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.endpoint = FakeEndpoint()
        self.forwarder = statsd.GraphiteForwarder(
            "graphite", 2003, max_queued=3, endpoint=self.endpoint, clock=self.clock,
            retry_policy=lambda attempt: 1.0)
        self.forwarder.start()
        self.addCleanup(self.forwarder.stop)

    def test_queue_is_bounded_oldest_dropped_then_sent_when_up(self) -> None:
        for i in range(5):
            self.forwarder.send(b"flush%d\n" % i)
        self.assertFalse(self.forwarder.connected)
        self.assertEqual(self.forwarder.dropped, 2)
        self.assertEqual(list(self.forwarder.queue), [b"flush2\n", b"flush3\n", b"flush4\n"])
        self.endpoint.up = True
        self.clock.advance(1.0)
        self.assertTrue(self.forwarder.connected)
        self.assertEqual(self.endpoint.transports[0].value(), b"flush2\nflush3\nflush4\n")
        self.forwarder.send(b"flush5\n")
        self.assertEqual(self.endpoint.transports[0].value()[-7:], b"flush5\n")

    def test_restart_reconnects_and_queues_meanwhile(self) -> None:
        self.endpoint.up = True
        self.clock.advance(1.0)
        first = self.endpoint.transports[0]
        self.endpoint.up = False
        self.endpoint.protocols[0].connectionLost(None)
        self.assertFalse(self.forwarder.connected)
        self.forwarder.send(b"while-down\n")
        self.assertEqual(first.value(), b"")
        self.endpoint.up = True
        self.clock.advance(1.0)
        self.assertEqual(self.endpoint.transports[-1].value(), b"while-down\n")

    def test_a_slow_graphite_pauses_writes(self) -> None:
        self.endpoint.up = True
        self.clock.advance(1.0)
        transport = self.endpoint.transports[0]
        self.assertIs(transport.producer, self.forwarder)
        self.forwarder.pauseProducing()
        self.forwarder.send(b"held\n")
        self.assertEqual(transport.value(), b"")
        self.forwarder.resumeProducing()
        self.assertEqual(transport.value(), b"held\n")

    def test_server_keeps_receiving_and_reports_graphite_drops(self) -> None:
        server = statsd.StatsdServer(flush_interval=1.0, clock=self.clock,
                                     graphite=self.forwarder)
        protocol = statsd.StatsdProtocol(server)
        for _ in range(6):
            protocol.datagramReceived(b"n:1|c", ("10.0.0.1", 1))
            rollup = server.flush()
            self.assertEqual(rollup.counters["n"], 1.0)
        self.assertEqual(self.forwarder.dropped, 3)
        rollup = server.flush()
        self.assertEqual(rollup.counters[statsd.GRAPHITE_DROPPED], 1.0)
        self.assertEqual(len(self.forwarder.queue), 3)


class OptionsTests(unittest.TestCase):
    def test_parse(self) -> None:
        o = tap_statsd.Options()
        o.parseOptions(["--port", "9125", "--flush-interval", "0.5",
                        "--graphite", "carbon.local:2003", "--percentiles", "90,99.9"])
        self.assertEqual((o["port"], o["flush-interval"], o["graphite"], o["percentiles"]),
                         (9125, 0.5, "carbon.local:2003", (90.0, 99.9)))

    def test_bad_options(self) -> None:
        for argv in [["--flush-interval", "0"], ["--graphite", "nohost:port"],
                     ["--percentiles", "ninety"], ["--port", "x"], ["--gc-threshold", "-5"],
                     ["--percentiles", "150"], ["--percentiles", "90,nan"],
                     ["--percentiles", "0"]]:
            self.assertRaises(usage.UsageError, tap_statsd.Options().parseOptions, argv)

    def test_parse_address(self) -> None:
        self.assertEqual(statsd.parse_address("h:1"), ("h", 1))
        self.assertEqual(statsd.parse_address("h"), ("h", 2003))
        self.assertEqual(statsd.parse_address("[::1]:2004"), ("::1", 2004))
        self.assertRaises(ValueError, statsd.parse_address, ":1")
        self.assertRaises(ValueError, statsd.parse_address, "h:99999")

    def test_every_option_reaches_the_service(self) -> None:
        o = tap_statsd.Options()
        o.parseOptions(["--port", "9125", "--interface", "127.0.0.2", "--flush-interval", "2.5",
                        "--graphite", "g.example:2004", "--percentiles", "50,99.9",
                        "--prefix", "p", "--max-queued", "7", "--shutdown-timeout", "1.5",
                        "--gc-threshold", "4321"])
        service = tap_statsd.makeService(o)
        self.assertEqual((service.port, service.shutdown_timeout, service.gc_threshold),
                         (9125, 1.5, 4321))
        fresh = tap_statsd.Options()
        fresh.parseOptions([])
        self.assertEqual({k: service.options[k] for k in (
            "interface", "flush_interval", "graphite", "percentiles", "prefix", "max_queued")}, {
            "interface": "127.0.0.2", "flush_interval": 2.5, "graphite": "g.example:2004",
            "percentiles": (50.0, 99.9), "prefix": "p", "max_queued": 7})
        self.assertEqual(set(service.options), set(tap_statsd.service_options(fresh)))

    @defer.inlineCallbacks
    def test_service_starts_and_stops(self) -> Any:
        o = tap_statsd.Options()
        o.parseOptions(["--port", "0", "--interface", "127.0.0.1", "--admin-port", "0"])
        service = tap_statsd.makeService(o)
        self.assertEqual(service.gc_threshold, 50_000)  # the ready server tunes the collector
        service.startService()
        self.assertNotEqual(service.server.port, 0)
        sock = yield udp.socket(0, interface="127.0.0.1")
        self.addCleanup(lambda: (sock.close(), sock.when_closed())[1])
        yield sock.put({"host": "127.0.0.1", "port": service.server.port,
                        "message": b"svc:1|c"})
        yield service.stopService()
        self.assertTrue(service.server.rollups.is_closed)

    def test_twistd_plugin_is_found(self) -> None:
        from twisted.application.service import IServiceMaker
        from twisted.plugin import getPlugins
        names = [p.tapname for p in getPlugins(IServiceMaker)]
        self.assertIn("aleph-statsd", names)


CARBON_CONF = """[cache]
STORAGE_DIR = {dir}/
LOCAL_DATA_DIR = {dir}/whisper/
CONF_DIR = {dir}/
LOG_DIR = {dir}/log/
PID_DIR = {dir}/
USER =
ENABLE_TAGS = False
MAX_CREATES_PER_MINUTE = inf
LINE_RECEIVER_INTERFACE = 127.0.0.1
LINE_RECEIVER_PORT = {line}
PICKLE_RECEIVER_INTERFACE = 127.0.0.1
PICKLE_RECEIVER_PORT = {pickle}
CACHE_QUERY_INTERFACE = 127.0.0.1
CACHE_QUERY_PORT = {query}
"""


def free_tcp_ports(n: int) -> List[int]:
    import socket
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def system_env() -> dict:
    """The environment for Debian's own Python tools (carbon-cache,
    whisper-fetch): without PYTHONPATH, which may point at this virtualenv's
    packages (``trial -j`` sets it), too new for the system interpreter."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


class CarbonProcess(ProcessProtocol):
    """carbon-cache in --debug mode; ``wrote(metric)`` fires once it logs
    that datapoints for ``metric`` reached their whisper file."""

    def __init__(self) -> None:
        self.ended: Deferred = Deferred()
        self.output = b""
        self._waiting: List[Any] = []

    def wrote(self, metric: str) -> Deferred:
        d: Deferred = Deferred()
        self._waiting.append((f"datapoints for {metric} in ".encode(), d))
        self.outReceived(b"")
        return d

    def outReceived(self, data: bytes) -> None:
        self.output += data
        for marker, d in list(self._waiting):
            if marker in self.output:
                self._waiting.remove((marker, d))
                d.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


class CarbonIntegrationTests(unittest.TestCase):
    """Optional: a real carbon-cache (Debian's graphite-carbon) stores a flush."""

    timeout = 60

    if shutil.which("carbon-cache") is None or shutil.which("whisper-fetch") is None:
        skip = ("Debian's graphite-carbon is not installed (carbon-cache, whisper-fetch):"
                " the in-test Graphite server above covers the plaintext protocol")

    @defer.inlineCallbacks
    def test_real_carbon_cache_stores_the_metric(self) -> Any:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(workdir, "log"))
        line, pickle_port, query = free_tcp_ports(3)
        conf = os.path.join(workdir, "carbon.conf")
        with open(conf, "w") as f:
            f.write(CARBON_CONF.format(dir=workdir, line=line, pickle=pickle_port, query=query))
        with open(os.path.join(workdir, "storage-schemas.conf"), "w") as f:
            f.write("[default]\npattern = .*\nretentions = 1s:1h\n")
        carbon = CarbonProcess()
        process = reactor.spawnProcess(
            carbon, shutil.which("carbon-cache"),
            ["carbon-cache", f"--config={conf}", "--debug", "start"], env=system_env())

        def stop_carbon() -> Deferred:
            if not carbon.ended.called:
                process.signalProcess("TERM")
            return carbon.ended
        self.addCleanup(stop_carbon)

        # The forwarder retries until carbon-cache is listening.
        server = open_server(self, flush_interval=0.2, graphite=f"127.0.0.1:{line}")
        client = yield statsd.client("127.0.0.1", server.port)
        self.addCleanup(lambda: (client.close(), client.socket.when_closed())[1])
        yield client.increment("carbon_it", 3)
        # carbon-cache says when the flush reached the whisper file (bounded by
        # this test's timeout); then read it back with graphite's own tool.
        yield carbon.wrote("stats.counters.carbon_it.count")
        wsp = os.path.join(workdir, "whisper", "stats", "counters", "carbon_it", "count.wsp")
        out = yield getProcessOutput(shutil.which("whisper-fetch"), [wsp], env=system_env())
        values = [float(v) for _, v in (ln.split() for ln in out.decode().splitlines())
                  if v != "None"]
        self.assertIn(3.0, values, carbon.output.decode()[-2000:])
        self.assertEqual(sum(values), 3.0)
