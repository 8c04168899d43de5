"""Tests for twisted_aleph.udp and the seed's UDP example (demo/udp.py)."""

from __future__ import annotations

import os
import sys
from typing import Any, List

from twisted.internet import defer, reactor, task
from twisted.internet.error import CannotListenError
from twisted.internet.utils import getProcessOutputAndValue
from twisted.logger import Logger, formatEvent
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph import udp
from twisted_aleph.demo import udp as demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UDPSocketTests(unittest.TestCase):
    async def open(self, **kwargs: Any) -> udp.DatagramSocket:
        sock = await udp.socket(0, interface="127.0.0.1", **kwargs)
        self.addCleanup(lambda: (sock.close(), sock.when_closed())[1])
        return sock

    def to(self, sock: udp.DatagramSocket, message: Any, host: str = "127.0.0.1") -> dict:
        return {"host": host, "port": sock.port, "message": message}

    @defer.inlineCallbacks
    def test_round_trip_of_str_bytes_and_bytearray(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        b = yield defer.ensureDeferred(self.open())
        self.assertNotEqual(a.port, 0)
        self.assertEqual(a.info["port"], a.port)
        for message in ["héllo", b"\x00bytes", bytearray(b"ba")]:
            ok = yield b.put(self.to(a, message))
            self.assertIs(ok, True)
        got: List[Any] = []
        for _ in range(3):
            msg = yield a.take()
            got.append(msg)
        self.assertEqual([m["message"] for m in got],
                         ["héllo".encode(), b"\x00bytes", b"ba"])
        self.assertEqual({(m["host"], m["port"]) for m in got}, {("127.0.0.1", b.port)})

    @defer.inlineCallbacks
    def test_each_datagram_is_exactly_its_own_bytes(self) -> Any:
        """The receive buffer is reused: a short datagram after a long one
        must carry nothing of the long one."""
        a = yield defer.ensureDeferred(self.open())
        b = yield defer.ensureDeferred(self.open())
        self.assertIsInstance(a.listening_port, udp.BufferReusingPort)
        for message in [b"L" * 60000, b"s", b"", b"m" * 1500]:
            yield b.put(self.to(a, message))
        got = []
        for _ in range(4):
            msg = yield a.take()
            got.append(msg["message"])
        self.assertEqual(got, [b"L" * 60000, b"s", b"", b"m" * 1500])

    def test_listen_elsewhere_uses_listenUDP_with_room_for_any_datagram(self) -> None:
        calls: List[Any] = []

        class OtherReactor:
            def listenUDP(self, *args: Any, **kwargs: Any) -> str:
                calls.append((args, kwargs))
                return "port"

        proto = udp.DatagramStreamProtocol(s.Stream(), task.Clock())
        self.assertEqual(udp.listen(OtherReactor(), 9, proto, "::1"), "port")
        self.assertEqual(calls, [((9, proto), {"interface": "::1", "maxPacketSize": 65536})])

    @defer.inlineCallbacks
    def test_host_names_are_resolved(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        b = yield defer.ensureDeferred(self.open())
        ok = yield b.put(self.to(a, "named", host="localhost"))
        self.assertIs(ok, True)
        msg = yield a.take()
        self.assertEqual(msg["message"], b"named")

    @defer.inlineCallbacks
    def test_oversized_message_fails_only_that_put(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        b = yield defer.ensureDeferred(self.open())
        yield self.assertFailure(b.put(self.to(a, b"x" * (udp.MAX_DATAGRAM + 1))),
                                 udp.MessageTooLong)
        ok = yield b.put(self.to(a, b"y" * udp.MAX_DATAGRAM))
        self.assertIs(ok, True)
        msg = yield a.take()
        self.assertEqual(len(msg["message"]), udp.MAX_DATAGRAM)
        self.assertFalse(b.is_closed)

    @defer.inlineCallbacks
    def test_malformed_puts_fail_with_a_clear_error(self) -> Any:
        b = yield defer.ensureDeferred(self.open())
        for bad in ["just a string", {"host": "127.0.0.1", "message": b"x"},
                    {"host": "127.0.0.1", "port": 0, "message": b"x"},
                    {"host": "127.0.0.1", "port": True, "message": b"x"},
                    {"host": "127.0.0.1", "port": 9, "message": object()}]:
            yield self.assertFailure(b.put(bad), ValueError, TypeError)
        self.assertFalse(b.is_closed)

    @defer.inlineCallbacks
    def test_close_releases_the_port_and_ends_both_halves(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        port = a.port
        a.close()
        yield a.when_closed()
        self.assertTrue(a.is_closed)
        end = yield a.take("end")
        self.assertEqual(end, "end")
        ok = yield a.put(self.to(a, b"late"))
        self.assertIs(ok, False)
        again = yield udp.socket(port, interface="127.0.0.1")  # the port is free
        again.close()
        yield again.when_closed()

    @defer.inlineCallbacks
    def test_a_failing_close_callback_is_logged_not_raised(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        a.on_closed(lambda: 1 / 0)
        a.close()  # the error stays out of close()
        yield a.when_closed()
        a.on_closed(lambda: 1 / 0)  # nor raised by on_closed on a closed sink
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    @defer.inlineCallbacks
    def test_closing_the_source_closes_the_socket(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        a.source.close()
        yield a.when_closed()
        self.assertTrue(a.is_closed)

    @defer.inlineCallbacks
    def test_busy_port_fails_the_deferred(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        yield self.assertFailure(udp.socket(a.port, interface="127.0.0.1"),
                                 CannotListenError)

    @defer.inlineCallbacks
    def test_connect_a_stream_into_the_socket(self) -> Any:
        a = yield defer.ensureDeferred(self.open())
        b = yield defer.ensureDeferred(self.open())
        s.connect(s.stream_of([self.to(a, str(i)) for i in range(5)]), b, downstream=False)
        got = []
        for _ in range(5):
            msg = yield a.take()
            got.append(msg["message"])
        self.assertEqual(sorted(got), [str(i).encode() for i in range(5)])

    @defer.inlineCallbacks
    def test_short_lived_sources_do_not_pile_up_on_the_socket(self) -> Any:
        # Each connect() asks the sink to detach its edge when the sink
        # closes; once the source is done, the sink must forget that request.
        a = yield defer.ensureDeferred(self.open())
        b = yield defer.ensureDeferred(self.open())
        before = len(b.sink._on_closed)
        for i in range(50):
            s.connect(s.stream_of([self.to(a, str(i))]), b, downstream=False)
        self.assertEqual(len(b.sink._on_closed), before)
        self.assertFalse(b.is_closed)
        msg = yield a.take()
        self.assertIn(msg["message"], {str(i).encode() for i in range(50)})


class EchoTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_a_socket_connected_to_itself_echoes(self) -> Any:
        """The duplex stream's received dicts are addressed to their sender."""
        echo = yield udp.socket(0, interface="127.0.0.1")
        client = yield udp.socket(0, interface="127.0.0.1")
        for sock in (echo, client):
            self.addCleanup(sock.when_closed)
            self.addCleanup(sock.close)
        s.connect(echo, echo)
        yield client.put({"host": "127.0.0.1", "port": echo.port, "message": b"ping"})
        reply = yield client.take()
        self.assertEqual((reply["message"], reply["port"]), (b"ping", echo.port))


class OverflowTests(unittest.SynchronousTestCase):
    """The receive path keeps at most buffer_size + 1 datagrams, then drops."""

    def test_full_stream_drops_and_counts(self) -> None:
        source = s.Stream(2)
        proto = udp.DatagramStreamProtocol(source, task.Clock())
        warnings: List[Any] = []
        proto.overflowed = lambda: warnings.append(1)  # type: ignore[method-assign]
        for i in range(10):
            proto.datagramReceived(str(i).encode(), ("10.0.0.1", 99))
        self.assertEqual(proto.dropped, 7)
        self.assertEqual(len(warnings), 7)
        taken = [source.take().result["message"] for _ in range(3)]
        self.assertEqual(taken, [b"0", b"1", b"2"])
        proto.datagramReceived(b"later", ("10.0.0.1", 99))
        self.assertEqual(source.take().result["message"], b"later")
        self.assertEqual(proto.dropped, 7)

    def test_log_throttle(self) -> None:
        t = udp.LogThrottle(10.0)
        self.assertEqual(t.allow(0.0), (True, 0))
        self.assertEqual(t.allow(1.0), (False, 0))
        self.assertEqual(t.allow(2.0), (False, 0))
        self.assertEqual(t.allow(10.5), (True, 2))

    def test_to_datagram(self) -> None:
        self.assertEqual(udp.to_datagram("é"), "é".encode())
        self.assertEqual(udp.to_datagram(memoryview(b"mv")), b"mv")
        with self.assertRaises(udp.MessageTooLong):
            udp.to_datagram("x" * 70000)


class SeedExampleTests(unittest.TestCase):
    def test_parse_statsd_packet(self) -> None:
        self.assertEqual(demo.parse_statsd_packet({"message": b"a:1"}), ("a", 1))
        self.assertEqual(demo.parse_statsd_packet({"message": "b:-2"}), ("b", -2))
        for bad in [b"a", b"a:x", b"a:1:2"]:
            self.assertRaises(ValueError, demo.parse_statsd_packet, {"message": bad})

    @defer.inlineCallbacks
    def test_rollup_with_a_clock(self) -> Any:
        clock = task.Clock()
        socket = s.splice(s.Stream(), s.Stream(16))
        server = yield demo.start_statsd_server(socket=socket, clock=clock)
        for msg in [b"a:1", b"b:2", b"garbage", b"a:x"]:
            socket.source.put({"host": "10.0.0.1", "port": 5, "message": msg})
        clock.advance(1.0)
        first = yield server.take()
        self.assertEqual(first, {"a": 1, "b": 2})
        socket.source.put({"host": "10.0.0.1", "port": 5, "message": b"a:5"})
        socket.source.put({"host": "10.0.0.1", "port": 5, "message": b"a:6"})
        clock.advance(1.0)
        second = yield server.take()
        self.assertEqual(second, {"a": 11})
        server.close()
        self.assertTrue(socket.is_closed)
        self.assertEqual(clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_flood_of_bad_packets_is_logged_throttled(self) -> Any:
        events: List[Any] = []
        self.patch(demo, "log", Logger(observer=events.append))
        clock = task.Clock()
        socket = s.splice(s.Stream(), s.Stream(16))
        server = yield demo.start_statsd_server(socket=socket, clock=clock, period=60.0)
        self.addCleanup(server.close)
        for i in range(1000):
            yield socket.source.put({"host": "10.0.0.9", "port": 5, "message": b"junk%d" % i})
        self.assertEqual(len(events), 1)
        self.assertIn("ignoring bad statsd packet from 10.0.0.9", formatEvent(events[0]))
        clock.advance(demo.BAD_PACKET_LOG_INTERVAL)
        yield socket.source.put({"host": "10.0.0.9", "port": 5, "message": b"a:1"})
        yield socket.source.put({"host": "10.0.0.9", "port": 5, "message": b"junk"})
        self.assertEqual(len(events), 2)
        self.assertEqual(events[1]["suppressed"], 999)
        self.assertIn("999 more bad packets not logged", formatEvent(events[1]))
        clock.advance(60.0 - demo.BAD_PACKET_LOG_INTERVAL)
        rollup = yield server.take()
        self.assertEqual(rollup, {"a": 1})      # the good packet still counted

    @defer.inlineCallbacks
    def test_seed_over_real_udp(self) -> Any:
        server_socket = yield udp.socket(0, interface="127.0.0.1")
        client_socket = yield udp.socket(0, interface="127.0.0.1")
        self.addCleanup(lambda: (client_socket.close(), client_socket.when_closed())[1])
        self.addCleanup(server_socket.when_closed)
        server = yield demo.start_statsd_server(socket=server_socket, period=0.01)
        self.addCleanup(server.close)
        yield demo.send_metric(client_socket, "a", 1, port=server_socket.port)
        yield demo.send_metric(client_socket, "b", 2, port=server_socket.port)
        totals: dict = {}
        while totals != {"a": 1, "b": 2}:  # the datagrams may straddle ticks
            rollup = yield server.take()
            for k, v in rollup.items():
                totals[k] = totals.get(k, 0) + v
            self.assertLessEqual(totals.get("a", 0), 1)
        server.close()
        self.assertTrue(server_socket.is_closed)

    @defer.inlineCallbacks
    def test_example_script_prints_the_seed_result(self) -> Any:
        probe = yield udp.socket(0)  # a free port for the example's server
        port = probe.port
        probe.close()
        yield probe.when_closed()
        env = dict(os.environ, PYTHONPATH=ROOT)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, [os.path.join(ROOT, "examples", "udp.py"), str(port)], env=env,
            reactor=reactor)
        self.assertEqual((out.decode().strip(), code), ("{'a': 1, 'b': 2}", 0), err)
