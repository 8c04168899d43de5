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
from twisted_aleph import statsd_protocol, udp
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

    def start_carbon(self, enable_tags: bool = False) -> Any:
        """A carbon-cache in a fresh directory: (its workdir, line port, process)."""
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(workdir, "log"))
        line, pickle_port, query = free_tcp_ports(3)
        conf = os.path.join(workdir, "carbon.conf")
        with open(conf, "w") as f:
            f.write(CARBON_CONF.format(dir=workdir, line=line, pickle=pickle_port, query=query)
                    .replace("ENABLE_TAGS = False", f"ENABLE_TAGS = {enable_tags}"))
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
        return workdir, line, carbon

    @defer.inlineCallbacks
    def whisper_values(self, wsp: str) -> Any:
        out = yield getProcessOutput(shutil.which("whisper-fetch"), [wsp], env=system_env())
        return [float(v) for _, v in (ln.split() for ln in out.decode().splitlines())
                if v != "None"]

    @defer.inlineCallbacks
    def test_real_carbon_cache_stores_the_metric(self) -> Any:
        workdir, line, carbon = self.start_carbon()
        # The forwarder retries until carbon-cache is listening.
        server = open_server(self, flush_interval=0.2, graphite=f"127.0.0.1:{line}")
        client = yield statsd.client("127.0.0.1", server.port)
        self.addCleanup(lambda: (client.close(), client.socket.when_closed())[1])
        yield client.increment("carbon_it", 3)
        # carbon-cache says when the flush reached the whisper file (bounded by
        # this test's timeout); then read it back with graphite's own tool.
        yield carbon.wrote("stats.counters.carbon_it.count")
        wsp = os.path.join(workdir, "whisper", "stats", "counters", "carbon_it", "count.wsp")
        values = yield self.whisper_values(wsp)
        self.assertIn(3.0, values, carbon.output.decode()[-2000:])
        self.assertEqual(sum(values), 3.0)

    @defer.inlineCallbacks
    def test_real_carbon_cache_stores_a_tagged_series(self) -> Any:
        """carbon 1.1 takes ``path;tag=value`` as a tagged series (its tag
        database, graphite-web, is not running here: only the whisper file counts)."""
        workdir, line, carbon = self.start_carbon(enable_tags=True)
        server = open_server(self, flush_interval=0.2, graphite=f"127.0.0.1:{line}")
        client = yield statsd.client("127.0.0.1", server.port)
        self.addCleanup(lambda: (client.close(), client.socket.when_closed())[1])
        yield client.increment("carbon_tagged", 4, tags={"env": "prod", "dc": "x"})
        yield carbon.wrote("stats.counters.carbon_tagged.count;dc=x;env=prod")
        tagged = [os.path.join(root, name)
                  for root, _, files in os.walk(os.path.join(workdir, "whisper", "_tagged"))
                  for name in files if name.endswith(".wsp")]
        self.assertTrue(tagged, carbon.output.decode()[-2000:])
        found = []
        for wsp in tagged:
            values = yield self.whisper_values(wsp)
            found.append(sum(values))
        self.assertIn(4.0, found)


# -- seeing what it does -----------------------------------------------------------

class LogCapture:
    """The statsd server module's log lines, formatted."""

    def __init__(self, test: unittest.TestCase) -> None:
        from twisted.logger import formatEvent
        self.lines: List[str] = []
        self.levels: List[str] = []

        def emit(level: str) -> Any:
            def emitter(fmt: str, **kw: Any) -> None:
                self.lines.append(formatEvent({"log_format": fmt, **kw}))
                self.levels.append(level)
            return emitter
        test.patch(statsd_server.log, "info", emit("info"))
        test.patch(statsd_server.log, "warn", emit("warn"))

    def matching(self, text: str) -> List[str]:
        return [line for line in self.lines if text in line]


class FlushReportTests(unittest.TestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.logs = LogCapture(self)

    def server(self, **kwargs: Any) -> statsd.StatsdServer:
        server = open_server(self, flush_interval=1.0, clock=self.clock, **kwargs)
        self.protocol = server.listening_port.protocol
        return server

    def test_without_a_backend_each_busy_flush_logs_a_summary(self) -> None:
        self.server()
        self.protocol.datagramReceived(b"a:1|c\nb:2|g\nbad", ("10.0.0.1", 1))
        self.clock.advance(1.0)
        [line] = self.logs.matching("statsd flush:")
        self.assertRegex(line, r"^statsd flush: 2 metrics \(1 counters, 1 gauges, 0 timers, "
                               r"0 sets\) from 1 datagrams, 1 bad lines in \d+\.\d ms$")
        self.clock.advance(1.0)  # the first idle flush says so once...
        self.clock.advance(1.0)
        self.clock.advance(1.0)  # ...then idle flushes are quiet
        self.assertEqual(len(self.logs.matching("statsd flush:")), 2)
        self.assertIn("from 0 datagrams", self.logs.matching("statsd flush:")[1])
        self.assertEqual(self.logs.matching("statsd flush at"), [])  # no --console

    def test_console_logs_every_value(self) -> None:
        self.server(console=True)
        self.protocol.datagramReceived(b"a:1|c\nb:2.5|g\nt:3|ms|#k:v", ("10.0.0.1", 1))
        self.clock.advance(1.0)
        [text] = self.logs.matching("statsd flush at 1:")
        lines = text.splitlines()
        for expected in ("stats.counters.a.count 1", "stats.gauges.b 2.5",
                         "stats.timers.t.mean;k=v 3"):
            self.assertIn(expected, lines)

    def test_with_graphite_no_summary(self) -> None:
        self.server(graphite="127.0.0.1:1")
        self.protocol.datagramReceived(b"a:1|c", ("10.0.0.1", 1))
        self.clock.advance(1.0)
        self.assertEqual(self.logs.matching("statsd flush:"), [])


class PeerLogTests(unittest.TestCase):
    """One peer's garbage never hides another's, nor floods the log."""

    def test_each_peer_gets_its_line(self) -> None:
        clock = task.Clock()
        logs = LogCapture(self)
        server = open_server(self, clock=clock)
        protocol = server.listening_port.protocol
        for _ in range(1000):
            protocol.datagramReceived(b"x" * 60000, ("10.6.6.6", 1))  # a flood of garbage
        protocol.datagramReceived(b"ok:1|c\ntypo:1|cc", ("10.0.0.2", 2))
        bad = logs.matching("bad line from")
        self.assertEqual(len(bad), 2)
        self.assertIn("10.0.0.2", bad[1])
        self.assertIn("'typo:1|cc'", bad[1])
        self.assertTrue(all(len(line) < 400 for line in bad))  # short, whatever the input
        self.assertEqual(server.rollup.bad_lines, 1001)
        self.assertEqual(server.rollup.counters, {"ok": 1.0})


class MaxMetricsServerTests(unittest.TestCase):
    def test_hostile_names_are_dropped_counted_and_logged_once(self) -> None:
        clock = task.Clock()
        logs = LogCapture(self)
        server = open_server(self, clock=clock, flush_interval=1.0, max_metrics=50)
        protocol = server.listening_port.protocol
        protocol.datagramReceived(b"app.requests:1|c", ("10.0.0.2", 2))
        for i in range(100):  # 10,000 invented names
            protocol.datagramReceived(
                b"\n".join(b"junk.%d.%d:1|g" % (i, j) for j in range(100)), ("10.6.6.6", 1))
            protocol.datagramReceived(b"app.requests:1|c", ("10.0.0.2", 2))
        rollups: List[Rollup] = []
        server.rollups.take().addCallback(rollups.append)
        clock.advance(1.0)
        [rollup] = rollups
        self.assertEqual(rollup.counters["app.requests"], 101.0)
        self.assertEqual(rollup.counters["statsd.dropped_new_metrics"], 10000 - 49)
        self.assertEqual(len(rollup.gauges), 49)
        [line] = logs.matching("statsd: at the caps")
        self.assertIn("9951 new metrics (such as 'junk.99.99')", line)
        self.assertLessEqual(server.rollup.series, 50)
        for _ in range(5):  # still at the cap: logged at most every 10 s
            protocol.datagramReceived(b"more.junk:1|g", ("10.6.6.6", 1))
            clock.advance(1.0)
        self.assertEqual(len(logs.matching("statsd: at the caps")), 1)


class FlushPayloadCapTests(unittest.SynchronousTestCase):
    def test_a_flush_sends_at_most_max_flush_bytes_and_says_what_it_left_out(self) -> None:
        clock = task.Clock()
        endpoint = FakeEndpoint()
        endpoint.up = True
        forwarder = statsd.GraphiteForwarder("graphite", 2003, endpoint=endpoint, clock=clock,
                                             retry_policy=lambda attempt: 1.0)
        server = statsd.StatsdServer(flush_interval=1.0, clock=clock, graphite=forwarder,
                                     max_flush_bytes=4096, gauge_ttl=1)
        forwarder.start()
        self.addCleanup(forwarder.stop)
        protocol = statsd.StatsdProtocol(server)
        protocol.datagramReceived(b"\n".join(b"g.%04d:1|g" % i for i in range(1000)),
                                  ("10.6.6.6", 1))
        first = server.flush()
        written = endpoint.transports[0].value()
        self.assertLessEqual(len(written), 4096)
        self.assertIn(b"stats.counters.statsd.packets_received.count 1 ", written)
        left_out = server.graphite_lines_dropped
        self.assertEqual(len(written.splitlines()) + left_out,
                         len(first.graphite_lines().splitlines()))
        endpoint.transports[0].clear()
        server.flush()  # reported at the next flush, as a counter
        self.assertIn(b"stats.counters.statsd.graphite_dropped_lines.count %d " % left_out,
                      endpoint.transports[0].value())


class GraphiteQueueBytesTests(unittest.SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.endpoint = FakeEndpoint()
        self.forwarder = statsd.GraphiteForwarder(
            "graphite", 2003, max_queued_bytes=1000, endpoint=self.endpoint, clock=self.clock,
            retry_policy=lambda attempt: 1.0)
        self.forwarder.start()
        self.addCleanup(self.forwarder.stop)

    def test_queue_is_bounded_in_bytes_oldest_dropped_counted(self) -> None:
        for i in range(10):
            self.forwarder.send(b"%d" % i + b"x" * 299)  # 300 bytes each
        self.assertEqual(len(self.forwarder.queue), 3)
        self.assertEqual(self.forwarder.queued_bytes, 900)
        self.assertEqual(self.forwarder.dropped, 7)
        self.assertEqual(self.forwarder.dropped_bytes, 2100)
        self.assertEqual([p[:1] for p in self.forwarder.queue], [b"7", b"8", b"9"])
        self.endpoint.up = True
        self.clock.advance(1.0)
        self.assertEqual(self.endpoint.transports[0].value()[:1], b"7")
        self.assertEqual(self.forwarder.queued_bytes, 0)

    def test_a_flush_bigger_than_the_queue_is_dropped_itself(self) -> None:
        self.forwarder.send(b"small\n")
        self.forwarder.send(b"b" * 2000)
        self.assertEqual(list(self.forwarder.queue), [])
        self.assertEqual(self.forwarder.dropped, 2)

    def test_default_is_64_mib_and_status_lines(self) -> None:
        self.assertEqual(statsd.DEFAULT_MAX_QUEUED_BYTES, 64 * 1024 * 1024)
        self.forwarder.send(b"abc\n")
        status = {name: value for _, name, value in self.forwarder.status()}
        self.assertEqual((status["queued_bytes"], status["flush_length"]), (4, 4))
        self.clock.advance(1.0)  # a failed attempt is an "exception" for Etsy's stats
        self.assertEqual(self.forwarder.last_exception, 1.0)


class NewOptionsTests(unittest.TestCase):
    def test_every_new_option_reaches_start_server(self) -> None:
        o = tap_statsd.Options()
        o.parseOptions([
            "--console", "--delete-idle", "counters,gauges", "--gauge-ttl", "5",
            "--max-metrics", "10", "--max-state-bytes", "4096", "--max-name-bytes", "64",
            "--max-flush-bytes", "999", "--max-queued-bytes", "777",
            "--histogram", "api:10,inf", "--histogram", ":1", "--prefix", "p",
            "--prefix-counter", "c", "--prefix-timer", "t", "--prefix-gauge", "",
            "--prefix-set", "s", "--prefix-stats", "me", "--suffix", "x",
            "--admin-port", "9126", "--admin-interface", "::1", "--admin-max-line", "50",
            "--admin-idle-timeout", "7", "--http", "9127", "--http-interface", "0.0.0.0",
            "--http-window", "60", "--http-max-series", "3"])
        options = tap_statsd.makeService(o).options
        self.assertEqual({k: options[k] for k in (
            "console", "delete_idle", "gauge_ttl", "max_metrics", "max_state_bytes",
            "max_name_bytes", "max_flush_bytes", "max_queued_bytes", "histograms",
            "stats_prefix", "admin_port", "admin_interface", "admin_options", "http_port",
            "http_interface", "live_options")}, {
            "console": True, "delete_idle": ("counters", "gauges"), "gauge_ttl": 5,
            "max_metrics": 10, "max_state_bytes": 4096, "max_name_bytes": 64,
            "max_flush_bytes": 999, "max_queued_bytes": 777,
            "histograms": (("api", (10.0, float("inf"))), ("", (1.0,))),
            "stats_prefix": "me", "admin_port": 9126, "admin_interface": "::1",
            "admin_options": {"max_line": 50, "idle_timeout": 7.0}, "http_port": 9127,
            "http_interface": "0.0.0.0", "live_options": {"window": 60.0, "max_series": 3}})
        self.assertEqual(options["names"], statsd_protocol.GraphiteNames("p", "c", "t", "", "s",
                                                                          "x"))

    def test_defaults(self) -> None:
        o = tap_statsd.Options()
        o.parseOptions([])
        options = tap_statsd.service_options(o)
        self.assertEqual((options["admin_port"], options["admin_interface"],
                          options["http_port"], options["max_metrics"],
                          options["max_name_bytes"], options["max_queued_bytes"],
                          options["delete_idle"], options["gauge_ttl"]),
                         (8126, "127.0.0.1", None, 100_000, 256, 64 * 1024 * 1024,
                          ("counters", "timers", "sets"), 3600))
        o = tap_statsd.Options()
        o.parseOptions(["--no-admin", "--delete-idle", "none"])
        self.assertEqual((tap_statsd.service_options(o)["admin_port"],
                          tap_statsd.service_options(o)["delete_idle"]), (None, ()))

    def test_bad_new_options(self) -> None:
        for argv in [["--max-metrics", "0"], ["--max-name-bytes", "0"],
                     ["--max-flush-bytes", "-1"], ["--max-queued-bytes", "-1"],
                     ["--gauge-ttl", "-1"], ["--delete-idle", "counter"],
                     ["--histogram", "api:100,10"], ["--histogram", "api"],
                     ["--prefix", "a b"], ["--suffix", "x;y"], ["--prefix-stats", ""],
                     ["--admin-port", "70000"], ["--admin-max-line", "0"],
                     ["--http", "-1"], ["--http-window", "0"], ["--admin-idle-timeout", "-1"],
                     ["--http-max-series", "50001"]]:
            self.assertRaises(usage.UsageError, tap_statsd.Options().parseOptions, argv)

    @defer.inlineCallbacks
    def test_service_serves_admin_and_live_page_and_closes_them(self) -> Any:
        o = tap_statsd.Options()
        o.parseOptions(["--port", "0", "--interface", "127.0.0.1", "--admin-port", "0",
                        "--http", "0"])
        service = tap_statsd.makeService(o)
        service.startService()
        admin, live = service.server.attached
        self.assertNotEqual(admin.port, 0)
        self.assertNotEqual(live.port, 0)
        yield service.stopService()
        self.assertEqual(admin.connections, set())
        self.assertEqual(list(live.feed.clients), [])


class ThreadedFlushTests(unittest.TestCase):
    """A big flush computes in the reactor's thread pool; flushes stay in order."""

    @defer.inlineCallbacks
    def test_flushes_computed_in_threads_arrive_in_order_and_whole(self) -> Any:
        clock = task.Clock()
        server = statsd.start_server(0, interface="127.0.0.1", clock=clock, reactor=reactor,
                                     threaded_flush_lines=0, graphite="127.0.0.1:1")
        closed = []
        self.addCleanup(lambda: closed or server.close())
        protocol = server.listening_port.protocol
        for n in range(1, 4):
            protocol.datagramReceived(
                b"\n".join(b"t.%d:%d|ms" % (i, n) for i in range(300)), ("10.0.0.1", 1))
            clock.advance(1.0)  # three flushes handed to the pool, one after the other
        self.assertEqual(len(server.graphite.queue), 0)  # computing, not delivered yet
        for n in range(1, 4):
            rollup = yield server.rollups.take()
            self.assertEqual(rollup.timestamp, float(n))
            self.assertEqual(len(rollup.timers), 300)
            self.assertEqual(rollup.timers["t.7"]["mean"], float(n))
        self.assertEqual(len(server.graphite.queue), 3)  # sent in order, Graphite being away
        self.assertIn(b"stats.timers.t.7.mean 3 3\n", server.graphite.queue[-1])
        protocol.datagramReceived(b"last:1|c", ("10.0.0.1", 1))
        closed.append(True)
        yield server.close()
        last = yield server.rollups.take()
        self.assertEqual(last.counters["last"], 1.0)

    def test_small_flushes_stay_on_the_reactor_thread(self) -> None:
        clock = task.Clock()
        server = open_server(self, clock=clock)
        rollups: List[Rollup] = []
        server.rollups.take().addCallback(rollups.append)
        clock.advance(1.0)
        self.assertEqual(len(rollups), 1)  # delivered at once
        self.assertEqual(server.threaded_flush_lines, statsd_server.DEFAULT_THREADED_FLUSH_LINES)


class SeedStatsdDigitsTests(unittest.SynchronousTestCase):
    """The seed's pared-down statsd (twisted_aleph.demo.udp) reads ASCII digits only too."""

    def test_unicode_digits_are_refused(self) -> None:
        from twisted_aleph.demo import udp as demo_udp
        self.assertEqual(demo_udp.parse_statsd_packet({"message": b"a:12"}), ("a", 12))
        for bad in ("a:\u0663", "a:\uff11", "a:1\u0663"):
            self.assertRaises(ValueError, demo_udp.parse_statsd_packet,
                              {"message": bad.encode()})
