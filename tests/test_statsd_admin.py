"""Etsy statsd's admin interface: the commands (pure) and the TCP glue (bounds).

Etsy's documented sessions (``docs/admin_interface.md`` and the fixtures of
its ``test/mgmt_console_tests.js``) run over a real socket, line by line.
The dumps are compared with Node's own ``util.inspect`` when ``node`` is
installed. The glue's bounds (line length, idle timeout, not reading while
the peer does not read) are each tested with a hostile client next to a
well-behaved one.
"""

from __future__ import annotations

import json
import math
import shutil
from typing import Any, Dict, List

from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from tests.test_websocket import bounded
from twisted_aleph import statsd
from twisted_aleph.peerlog import PeerLog
from twisted_aleph.statsd.admin import AdminFactory, AdminProtocol
from twisted_aleph.statsd_protocol import AdminSession, StatsdRollup, inspect
from twisted_aleph.statsd_protocol.admin import js_number, matching

NODE = shutil.which("node") or shutil.which("nodejs")


def session(**kwargs: Any) -> AdminSession:
    return AdminSession(StatsdRollup(), started=1000.0, **kwargs)


# -- the commands, pure ---------------------------------------------------------------

class EtsyMgmtConsoleFixtures(unittest.SynchronousTestCase):
    """Etsy's test/mgmt_console_tests.js, on our session."""

    def test_stat_matches(self) -> None:
        table = {"a.b": 1, "a.c": 1, "c": 1}
        for bucket, expected in [("d", []), ("a", []), ("c.a", []), ("c.*", []), ("", []),
                                 ("a.b", ["a.b"]), ("c", ["c"]), ("a.*", ["a.b", "a.c"])]:
            self.assertEqual(matching(table, bucket), expected, bucket)

    def test_stat_deletes(self) -> None:
        for args, remaining, answer in [
                (["e"], ["a.b", "a.c", "d"], "metric e not found\nEND\n\n"),
                (["a.b"], ["a.c", "d"], "deleted: a.b\nEND\n\n"),
                (["a.*"], ["d"], "deleted: a.b\ndeleted: a.c\nEND\n\n"),
                (["*"], [], "deleted: a.b\ndeleted: a.c\ndeleted: d\nEND\n\n")]:
            s = session()
            s.rollup.add_packet(b"a.b:1|c\na.c:1|c\nd:1|c")
            self.assertEqual(s.handle("delcounters " + " ".join(args), 0.0), (answer, False))
            self.assertEqual(sorted(s.rollup.counters), remaining)

    def test_each_type_has_its_del_command(self) -> None:
        s = session()
        s.rollup.add_packet(b"x:1|c\nx:1|ms\nx:1|g\nx:a|s")
        for kind in ("counters", "timers", "gauges", "sets"):
            self.assertEqual(s.handle(f"del{kind} x", 0.0)[0], "deleted: x\nEND\n\n")
            self.assertEqual(s.rollup.table(kind), {})
        self.assertEqual(s.rollup.series, 0)
        self.assertEqual(s.rollup.state_bytes, 0)


class SessionTests(unittest.SynchronousTestCase):
    def test_help_lists_every_command(self) -> None:
        answer, close = session().handle("help", 0.0)
        self.assertFalse(close)
        self.assertTrue(answer.startswith("Commands: stats, counters, timers, gauges, sets, "))
        self.assertTrue(answer.endswith("health, config, quit\n\n"))

    def test_health_get_and_set(self) -> None:
        s = session()
        self.assertEqual(s.handle("health", 0.0), ("health: up\n", False))
        self.assertEqual(s.handle("health down", 0.0), ("health: down\n", False))
        self.assertEqual(s.handle("health", 0.0), ("health: down\n", False))
        self.assertEqual(s.handle("health UP", 0.0), ("health: up\n", False))
        self.assertEqual(s.handle("health sideways", 0.0), ("health: up\n", False))

    def test_stats_as_etsy_with_the_backends_after(self) -> None:
        s = session(status=lambda: [("graphite", "last_flush", 1005.0),
                                    ("graphite", "flush_length", 123)])
        s.rollup.add_packet(b"garbage\nok:1|c")
        s.flushed(1003.0, 1)
        s.rollup.flush(1003.0, 1.0)
        answer = s.handle("stats", 1010.4)[0]
        lines = answer.split("\n")
        self.assertEqual(lines[:3], ["uptime: 10", "messages.last_msg_seen: 7",
                                     "messages.bad_lines_seen: 1"])
        self.assertIn("graphite.last_flush: 5", lines)  # last_*: seconds since (Etsy)
        self.assertIn("graphite.flush_length: 123", lines)
        self.assertIn("limits.max_metrics: 100000", lines)
        self.assertTrue(answer.endswith("\nEND\n\n"))

    def test_dumps_are_node_objects(self) -> None:
        s = session()
        s.rollup.add_packet(b"hits:3|c\nrt:1|ms\nrt:2.5|ms\nload:0.5|g\nu:b|s\nu:a|s")
        self.assertEqual(s.handle("gauges", 0.0)[0], "{ load: 0.5 }\nEND\n\n")
        self.assertEqual(s.handle("timers", 0.0)[0], "{ rt: [ 1, 2.5 ] }\nEND\n\n")
        self.assertEqual(s.handle("sets", 0.0)[0], "{ u: [ 'a', 'b' ] }\nEND\n\n")
        self.assertEqual(s.handle("counters", 0.0)[0],
                         "{\n  hits: 3,\n  'statsd.packets_received': 1,\n"
                         "  'statsd.metrics_received': 6,\n  'statsd.bad_lines': 0\n}\nEND\n\n")

    def test_bad_commands_are_errors(self) -> None:
        for line in ("", "   ", "bogus", "delbogus x", "Help", "counters\x00", "del"):
            self.assertEqual(session().handle(line, 0.0), ("ERROR\n", False), repr(line))

    def test_quit_and_config(self) -> None:
        self.assertEqual(session().handle("quit", 0.0), ("", True))
        s = session(config={"flush_interval": 1.0, "graphite": None, "console": True,
                            "delete_idle": ("counters", "sets")})
        self.assertEqual(s.handle("config", 0.0)[0],
                         "\nflush_interval: 1\ngraphite: None\nconsole: true\n"
                         "delete_idle: counters,sets\n")


class InspectTests(unittest.SynchronousTestCase):
    def test_numbers_as_javascript(self) -> None:
        for value, text in [(3.0, "3"), (0.1, "0.1"), (-2.5, "-2.5"), (1e21, "1e+21"),
                            (1e20, "100000000000000000000"), (1e-7, "1e-7"),
                            (0.000001, "0.000001"), (123456789.125, "123456789.125"),
                            (-0.0, "-0"), (1.5e300, "1.5e+300"), (math.inf, "Infinity"),
                            (10**22, "1e+22"), (7, "7")]:
            self.assertEqual(js_number(value), text, value)

    def test_shapes(self) -> None:
        self.assertEqual(inspect({}), "{}")
        self.assertEqual(inspect([]), "[]")
        self.assertEqual(inspect({"a": 1, "b.c": "it's"}), "{ a: 1, 'b.c': \"it's\" }")
        long = inspect({f"metric.number.{i}": i for i in range(5)})
        self.assertTrue(long.startswith("{\n  'metric.number.0': 0,\n"))
        self.assertEqual(inspect(list(range(150))).count("\n") > 1, True)
        self.assertIn("... 50 more items", inspect(list(range(150))))


SAMPLES: List[Any] = [
    {},
    {"a": 1},
    {"hits": 3, "statsd.packets_received": 1, "statsd.bad_lines": 0},
    {"rt": [1, 2.5], "x.y": [], "q": ["it's", 'say "hi"', "both ' \" `", "tab\tnl\n"]},
    {"t": list(range(7))},
    {"t": [float(i) / 3 for i in range(40)]},
    {"long": list(range(250))},
    {"names": [f"member-{i}" for i in range(30)]},
    {"mixed": [1, 22, 333, 4444, 55555, 666666, 7777777, 1e21, 1.5e-7, -0.0]},
    {f"metric.with.a.rather.long.name.{i}": i * 1.25 for i in range(12)},
    {"a": [1, 2, 3], "b": [4, 5, 6, 7, 8, 9, 10, 11], "c": "x"},
    list(range(101)),
    {"u": ["a" * 30, "b"]},
    {"g": 1e16, "h": 123456789012345680000.0, "i": 0.1 + 0.2},
]


class NodeAgreementTests(unittest.TestCase):
    """Our util.inspect against Node's, where Node is installed."""

    if NODE is None:
        skip = "node is not installed: the dumps are checked against fixed texts above"

    @defer.inlineCallbacks
    def test_same_text_as_node(self) -> Any:
        script = ("const util = require('util');"
                  "const values = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
                  "process.stdout.write(JSON.stringify(values.map(v => util.inspect(v))));")
        data = json.dumps(SAMPLES).replace("-0.0", "-0")
        out, err, code = yield bounded(_run_node(script, data.encode()), 30)
        self.assertEqual(code, 0, err)
        for value, expected in zip(SAMPLES, json.loads(out)):
            self.assertEqual(inspect(value), expected, value)


def _run_node(script: str, stdin: bytes) -> Deferred:
    """Run ``node -e script`` with ``stdin``; Deferred of (out, err, code)."""
    from twisted.internet import protocol

    class Collect(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.out, self.err = b"", b""
            self.done: Deferred = Deferred()

        def connectionMade(self) -> None:
            self.transport.write(stdin)
            self.transport.closeStdin()

        def outReceived(self, data: bytes) -> None:
            self.out += data

        def errReceived(self, data: bytes) -> None:
            self.err += data

        def processEnded(self, reason: Any) -> None:
            self.done.callback((self.out, self.err, reason.value.exitCode))

    p = Collect()
    reactor.spawnProcess(p, NODE, [NODE, "-e", script], env=None)  # type: ignore[attr-defined]
    return p.done


# -- the TCP glue --------------------------------------------------------------------

class AdminClient(Protocol):
    """Collects what the admin port says; ``ask``/``until`` fire once it has."""

    def __init__(self) -> None:
        self.received = b""
        self.waiting: List[Any] = []  # (start offset, marker, Deferred)
        self.closed: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for waiter in list(self.waiting):
            start, marker, d = waiter
            end = self.received.find(marker, start)
            if end >= 0:
                self.waiting.remove(waiter)
                d.callback(self.received[start:end + len(marker)])

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    def until(self, marker: bytes, start: int = 0) -> Deferred:
        """Deferred of what was received from ``start`` up to ``marker``."""
        d: Deferred = Deferred()
        self.waiting.append((start, marker, d))
        self.dataReceived(b"")
        return bounded(d)

    def ask(self, command: bytes, marker: bytes) -> Deferred:
        """Send one command line; Deferred of its answer (up to ``marker``)."""
        start = len(self.received)
        self.transport.write(command + b"\n")
        return self.until(marker, start)


class RealSocketTests(unittest.TestCase):
    """Etsy's documented sessions, and bad input, over a real TCP connection."""

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.server = statsd.start_server(0, interface="127.0.0.1", clock=self.clock,
                                          reactor=reactor, admin_port=0)
        self.addCleanup(self.server.close)
        self.admin = self.server.attached[0]
        self.protocol = self.server.listening_port.protocol

    async def connect(self) -> AdminClient:
        client = AdminClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.admin.port)
        await bounded(connectProtocol(endpoint, client))

        async def hang_up() -> None:
            client.transport.loseConnection()
            await bounded(client.closed)
        self.addCleanup(lambda: defer.ensureDeferred(hang_up()))
        return client

    def feed(self, *packets: bytes) -> None:
        for p in packets:
            self.protocol.datagramReceived(p, ("10.0.0.1", 1))

    async def _documented_sessions(self) -> None:
        self.feed(b"sandbox.test.temporary:1|c\nsandbox.test.a:1|c\nsandbox.test.b:1|c\n"
                  b"other:1|c")
        # echo "delcounters sandbox.test.temporary" | nc 127.0.0.1 8126
        c = await self.connect()
        self.assertEqual(await c.ask(b"delcounters sandbox.test.temporary", b"END\n\n"),
                         b"deleted: sandbox.test.temporary\nEND\n\n")
        # echo "delcounters sandbox.test.*" | nc 127.0.0.1 8126
        self.assertEqual(await c.ask(b"delcounters sandbox.test.*", b"END\n\n"),
                         b"deleted: sandbox.test.a\ndeleted: sandbox.test.b\nEND\n\n")
        self.assertEqual(sorted(self.server.rollup.counters), ["other"])
        config = (await c.ask(b"config", b"console: false\n")).decode()
        self.assertIn("\nflush_interval: 1\n", config)
        self.assertIn("\nmax_metrics: 100000\n", config)
        stats = (await c.ask(b"stats", b"END\n\n")).decode().split("\n")
        self.assertEqual([line.split(":")[0] for line in stats[:3]],
                         ["uptime", "messages.last_msg_seen", "messages.bad_lines_seen"])
        self.assertEqual(stats[-3:], ["END", "", ""])
        self.assertEqual(await c.ask(b"health", b"\n"), b"health: up\n")
        self.assertEqual(await c.ask(b"health down", b"\n"), b"health: down\n")
        self.assertEqual(await c.ask(b"counters", b"END\n\n"),
                         b"{\n  other: 1,\n  'statsd.packets_received': 1,\n"
                         b"  'statsd.metrics_received': 4,\n  'statsd.bad_lines': 0\n}\n"
                         b"END\n\n")
        c.transport.write(b"quit\n")
        await bounded(c.closed)

    def test_etsy_documented_sessions(self) -> Any:
        return defer.ensureDeferred(self._documented_sessions())

    async def _bad_commands(self) -> None:
        c = await self.connect()
        self.assertEqual(await c.ask(b"bogus", b"\n"), b"ERROR\n")
        self.assertEqual(await c.ask(b"\xff\xfe", b"\n"), b"ERROR\n")
        self.assertEqual(await c.ask(b"x" * 5000, b"\n"), b"ERROR line too long\n")
        self.assertEqual(await c.ask(b"health", b"\n"), b"health: up\n")  # still usable
        # CRLF (telnet) works too
        self.assertEqual(await c.ask(b"health\r", b"\n"), b"health: up\n")

    def test_bad_commands_leave_the_connection_usable(self) -> Any:
        return defer.ensureDeferred(self._bad_commands())

    async def _endless_line(self) -> None:
        hostile = await self.connect()
        polite = await self.connect()
        for _ in range(64):  # 4 MiB without a newline
            hostile.transport.write(b"y" * 65536)
        await hostile.until(b"ERROR line too long\n")
        self.assertEqual(await polite.ask(b"health", b"\n"), b"health: up\n")
        self.assertEqual(hostile.received, b"ERROR line too long\n")  # said once
        hostile.transport.write(b"\nhealth\n")  # the long line ends: usable again
        await hostile.until(b"health: up\n")

    def test_endless_line_is_discarded_as_it_arrives(self) -> Any:
        return defer.ensureDeferred(self._endless_line())

    async def _slow_reader(self) -> None:
        # A big table, and a peer that asks for it again and again, never reading.
        self.feed(b"\n".join(b"counter.number.%06d:1|c" % i for i in range(20000)))
        answer_size = len(self.server.admin.handle("counters", 0.0)[0])
        paused: Deferred = Deferred()
        original = AdminProtocol.pauseProducing

        def pause(protocol: AdminProtocol) -> None:
            original(protocol)
            if not paused.called:
                paused.callback(protocol)
        self.patch(AdminProtocol, "pauseProducing", pause)
        hostile = await self.connect()
        hostile.transport.pauseProducing()  # the peer reads nothing
        for _ in range(200):
            hostile.transport.write(b"counters\n")
        server_side = await bounded(paused)
        polite = await self.connect()
        self.assertEqual(await polite.ask(b"health", b"\n"), b"health: up\n")
        # The server stopped answering (and reading) once its send buffer filled:
        # what it holds for the peer is a few answers, not 200.
        held = len(server_side.transport.dataBuffer) + sum(
            len(b) for b in server_side.transport._tempDataBuffer)
        self.assertLess(held, 4 * answer_size)
        self.assertTrue(server_side._paused)
        hostile.transport.resumeProducing()
        await hostile.until(b"'counter.number.019999': 1")

    def test_a_peer_that_does_not_read_holds_a_bounded_answer(self) -> Any:
        return defer.ensureDeferred(self._slow_reader())


class InMemoryTests(unittest.SynchronousTestCase):
    """The bounds on an in-memory transport, timed by task.Clock."""

    def connect(self, factory: AdminFactory) -> AdminProtocol:
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        return protocol

    def setUp(self) -> None:
        self.clock = task.Clock()
        self.logged: List[Dict[str, Any]] = []
        log = PeerLog("test admin", clock=self.clock)
        self.patch(log._log, "warn", lambda fmt, **kw: self.logged.append(kw))
        self.factory = AdminFactory(session(), max_line=100, idle_timeout=30.0,
                                    clock=self.clock, peer_log=log)

    def test_idle_connections_are_closed_busy_ones_kept(self) -> None:
        idle, busy = self.connect(self.factory), self.connect(self.factory)
        for _ in range(10):
            self.clock.advance(20)
            busy.dataReceived(b"health\n")
        self.assertTrue(idle.transport.disconnected)
        self.assertFalse(busy.transport.disconnecting)
        self.assertEqual(busy.transport.value().count(b"health: up\n"), 10)
        busy.connectionLost(None)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_partial_long_line_is_not_buffered(self) -> None:
        p = self.connect(self.factory)
        for _ in range(100):
            p.dataReceived(b"z" * 1000)
            self.assertLessEqual(len(p._buffer), 100)
        p.dataReceived(b"zzz\nhealth\n")
        self.assertEqual(p.transport.value(), b"ERROR line too long\nhealth: up\n")
        self.assertEqual([kw["kind"] for kw in self.logged], ["admin line too long"])
        self.assertLessEqual(len(str(self.logged[0])), 600)

    def test_bad_commands_are_logged_rate_limited(self) -> None:
        p = self.connect(self.factory)
        for _ in range(50):
            p.dataReceived(b"bogus\n")
        self.assertEqual(p.transport.value(), b"ERROR\n" * 50)
        self.assertEqual(len(self.logged), 1)
        self.assertEqual(self.factory.peer_log.counts["bad admin command"], 50)

    def test_no_command_is_read_while_the_peer_is_not_reading(self) -> None:
        p = self.connect(self.factory)
        p.pauseProducing()  # what the transport does when its send buffer is full
        self.assertEqual(p.transport.producerState, "paused")
        p.dataReceived(b"health\nhealth\n")
        self.assertEqual(p.transport.value(), b"")
        p.resumeProducing()
        self.assertEqual(p.transport.value(), b"health: up\n" * 2)

    def test_limits_have_defaults(self) -> None:
        factory = AdminFactory(session(), clock=self.clock)
        self.assertEqual((factory.max_line, factory.idle_timeout), (1024, 300.0))
        self.assertRaises(ValueError, AdminFactory, session(), max_line=0, clock=self.clock)

