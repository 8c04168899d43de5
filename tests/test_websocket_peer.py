"""What a WebSocket peer sends that the server must take in its stride.

* frames sent in the same packet as the opening handshake are not lost;
* a close frame with a code no peer may send (RFC 6455 7.4) is answered with
  close 1002 and an orderly hang-up, server and client side;
* bad input is reported through the one logging policy
  (:class:`twisted_aleph.peerlog.PeerLog`): counted, one line per peer per
  interval, no traceback, and none of Autobahn's own per-connection lines.

In-memory connections (one ``dataReceived`` per packet, a ``task.Clock``)
where the split of bytes into reads matters; real sockets on 127.0.0.1 where
the difference between an orderly close and a reset does.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any, Dict, List, Optional, Tuple

from klein import Klein
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.server import Site

from twisted_aleph import stream as s
from twisted_aleph.http import start_server
from twisted_aleph.http.resource import handler_resource
from twisted_aleph.http.websocket import (
    _AutobahnLog, valid_close_code, websocket_client, websocket_connection,
)
from twisted_aleph.peerlog import PeerLog

from .test_websocket import RawClient, bounded, client_frame, close_code_sent, upgrade_request

INVALID_CLOSE_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)


def server_frames(data: bytes) -> List[Tuple[int, bytes]]:
    """(opcode, payload) of each unmasked, uncompressed frame after the 101 answer."""
    _, _, rest = data.partition(b"\r\n\r\n")
    frames = []
    while len(rest) >= 2:
        opcode, n, start = rest[0] & 0x0F, rest[1] & 0x7F, 2
        if n == 126:
            n, start = struct.unpack(">H", rest[2:4])[0], 4
        elif n == 127:
            n, start = struct.unpack(">Q", rest[2:10])[0], 10
        frames.append((opcode, rest[start:start + n]))
        rest = rest[start + n:]
    return frames


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A masked client close frame carrying ``code``."""
    return client_frame(8, struct.pack(">H", code) + reason)


class Recorder:
    """An observer collecting log events."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []

    def __call__(self, event: Dict[str, Any]) -> None:
        self.events.append(event)

    def texts(self) -> List[str]:
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in self.events]


# -- in-memory connections ----------------------------------------------------------


class _Transport(StringTransport):
    """A StringTransport that knows its protocol, as a TCP transport does
    (the WebSocket takeover swaps it)."""

    protocol: Any = None


class MemoryConnection:
    """One TCP connection into ``site``: each ``send`` is one read of the
    socket; the connection is lost once the server hangs up."""

    def __init__(self, site: Site, host: str = "10.0.0.1", port: int = 5555) -> None:
        address = IPv4Address("TCP", host, port)
        self.transport = _Transport(peerAddress=address)
        self.transport.protocol = site.buildProtocol(address)
        self.transport.protocol.makeConnection(self.transport)
        self.lost = False

    def send(self, data: bytes) -> None:
        self.transport.protocol.dataReceived(data)
        if self.transport.disconnecting and not self.lost:
            self.lost = True
            self.transport.protocol.connectionLost(Failure(ConnectionDone()))

    def received(self) -> bytes:
        return self.transport.value()


class MemoryServer:
    """A site with WebSocket echo routes on a Clock, without sockets.

    ``/echo`` upgrades at once (inside the read that carried the request);
    ``/echo-later`` one second later (after the read: what follows the
    request is then queued by twisted.web)."""

    def __init__(self, **ws_options: Any) -> None:
        self.clock = task.Clock()
        self.conns: List[Any] = []
        options = dict(clock=self.clock, compression=False)
        options.update(ws_options)
        app = Klein()

        def upgrade(request: Any) -> Deferred:
            d = websocket_connection(request, **options)

            def opened(conn: Any) -> None:
                self.conns.append(conn)
                s.connect(conn, conn)
            return d.addCallback(opened)

        @app.route("/echo")
        def echo(request: Any) -> Deferred:
            return upgrade(request)

        @app.route("/echo-later")
        def echo_later(request: Any) -> Deferred:
            return task.deferLater(self.clock, 1, upgrade, request)

        self.site = Site(handler_resource(app), reactor=self.clock)

    def connect(self, host: str = "10.0.0.1") -> MemoryConnection:
        return MemoryConnection(self.site, host)


# -- 1. frames in the handshake's packet --------------------------------------------


class EarlyFrameTests(unittest.TestCase):
    """A frame right after the request's headers, in the same read."""

    def test_frame_in_the_handshake_packet_is_echoed(self) -> None:
        server = MemoryServer()
        conn = server.connect()
        conn.send(upgrade_request("/echo") + client_frame(1, b"early bird"))
        self.assertTrue(conn.received().startswith(b"HTTP/1.1 101 "), conn.received())
        self.assertEqual(server_frames(conn.received()), [(1, b"early bird")])

    def test_several_frames_and_a_partial_one_in_the_handshake_packet(self) -> None:
        server = MemoryServer()
        conn = server.connect()
        third = client_frame(2, b"\x00third")
        conn.send(upgrade_request("/echo") + client_frame(1, b"first")
                  + client_frame(1, b"second") + third[:3])
        conn.send(third[3:])
        self.assertEqual(server_frames(conn.received()),
                         [(1, b"first"), (1, b"second"), (2, b"\x00third")])

    def test_frame_sent_while_the_handler_is_still_deciding(self) -> None:
        server = MemoryServer()
        conn = server.connect()
        conn.send(upgrade_request("/echo-later") + client_frame(1, b"patient"))
        conn.send(client_frame(1, b"and another"))
        self.assertEqual(conn.received(), b"")
        server.clock.advance(1)
        self.assertEqual(server_frames(conn.received()), [(1, b"patient"), (1, b"and another")])

    async def _over_a_socket(self) -> None:
        app = Klein()

        @app.route("/echo")
        def echo(request: Any) -> Deferred:
            return websocket_connection(request).addCallback(lambda c: s.connect(c, c))
        server = start_server(app, 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        raw = await connect_raw(self, server.port)
        raw.transport.write(upgrade_request("/echo") + client_frame(1, b"early bird"))
        data = await raw.wait_for(lambda d: len(server_frames(d)) == 1)
        self.assertEqual(server_frames(data), [(1, b"early bird")])

    def test_frame_in_the_handshake_write_over_a_socket(self) -> Deferred:
        return defer.ensureDeferred(self._over_a_socket())


# -- 2. invalid close codes -----------------------------------------------------------


class ReasonClient(RawClient):
    """A raw client that also records why its connection ended."""

    reason: Optional[Failure] = None

    def connectionLost(self, reason: Any = None) -> None:
        self.reason = reason
        super().connectionLost(reason)


async def connect_raw(case: unittest.TestCase, port: int) -> ReasonClient:
    client = ReasonClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

    async def cleanup() -> None:
        if not client.lost.called:
            client.transport.abortConnection()
        await bounded(client.lost)
    case.addCleanup(cleanup)
    return client


class CloseCodeTests(unittest.TestCase):
    def test_valid_close_codes(self) -> None:
        for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999):
            self.assertTrue(valid_close_code(code), code)
        for code in INVALID_CLOSE_CODES:
            self.assertFalse(valid_close_code(code), code)

    async def _server_answers_1002(self) -> None:
        app = Klein()
        server_conns: List[Any] = []
        peer_log = PeerLog("test", logger=Logger(observer=Recorder()))

        @app.route("/keep")
        def keep(request: Any) -> Deferred:
            d = websocket_connection(request, peer_log=peer_log)
            return d.addCallback(server_conns.append)
        server = start_server(app, 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        for code in INVALID_CLOSE_CODES:
            raw = await connect_raw(self, server.port)
            raw.transport.write(upgrade_request("/keep"))
            await raw.wait_for(lambda d: b"\r\n\r\n" in d)
            raw.transport.write(close_frame(code, b"why not"))
            data = await bounded(raw.lost)
            self.assertEqual(close_code_sent(data), 1002, code)
            # Hung up in order after the close frame, not reset.
            self.assertIsInstance(raw.reason.value, ConnectionDone, (code, raw.reason))
            conn = server_conns[-1]
            self.assertIsNone(await bounded(conn.take()))
            self.assertEqual(conn.info["local_close_code"], 1002, code)
            self.assertFalse(conn.info["was_clean"])
            self.assertIn(str(code), conn.info["close_reason"])
        self.assertEqual(peer_log.counts, {"protocol error": len(INVALID_CLOSE_CODES)})

    def test_server_answers_an_invalid_close_code_with_1002(self) -> Deferred:
        return defer.ensureDeferred(self._server_answers_1002())

    async def _valid_code_still_clean(self) -> None:
        app = Klein()
        server_conns: List[Any] = []

        @app.route("/keep")
        def keep(request: Any) -> Deferred:
            return websocket_connection(request).addCallback(server_conns.append)
        server = start_server(app, 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        raw = await connect_raw(self, server.port)
        raw.transport.write(upgrade_request("/keep"))
        await raw.wait_for(lambda d: b"\r\n\r\n" in d)
        raw.transport.write(close_frame(4000, b"bye"))
        data = await bounded(raw.lost)
        self.assertEqual(close_code_sent(data), 1000)  # the close answered
        self.assertIsNone(await bounded(server_conns[0].take()))
        self.assertEqual(server_conns[0].info["close_code"], 4000)
        self.assertTrue(server_conns[0].info["was_clean"])

    def test_a_valid_close_code_still_closes_cleanly(self) -> Deferred:
        return defer.ensureDeferred(self._valid_code_still_clean())

    async def _client_answers_1002(self) -> None:
        server = RawWebSocketServer(close_code=5000)
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        url = f"ws://127.0.0.1:{port.getHost().port}/"
        conn = await bounded(websocket_client(url, compression=False))
        self.assertIsNone(await bounded(conn.take()))
        self.assertEqual(conn.info["local_close_code"], 1002)
        self.assertIn("5000", conn.info["close_reason"])
        got = await bounded(server.got_close)
        self.assertEqual(got, 1002)

    def test_client_answers_an_invalid_close_code_with_1002(self) -> Deferred:
        return defer.ensureDeferred(self._client_answers_1002())


class RawWebSocketServer(protocol.Factory):
    """A hand-made WebSocket server: accepts the handshake, sends one close
    frame with ``close_code``, and fires ``got_close`` with the code of the
    client's close frame (None if the client hangs up without one)."""

    def __init__(self, close_code: int) -> None:
        self.close_code = close_code
        self.got_close: Deferred = Deferred()

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        return _RawServerProtocol(self)


class _RawServerProtocol(protocol.Protocol):
    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, factory: RawWebSocketServer) -> None:
        self.owner = factory
        self.buffer = b""
        self.upgraded = False

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, self.buffer = self.buffer.partition(b"\r\n\r\n")
            if not sep:
                self.buffer = head
                return
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
            self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                                 + b"\r\n\r\n")
            self.transport.write(b"\x88\x02" + struct.pack(">H", self.owner.close_code))
            self.upgraded = True
        if len(self.buffer) >= 8 and self.buffer[0] & 0x0F == 8:
            mask = self.buffer[2:6]
            code = bytes(b ^ mask[i] for i, b in enumerate(self.buffer[6:8]))
            self.fire(struct.unpack(">H", code)[0])
            self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.fire(None)

    def fire(self, code: Optional[int]) -> None:
        if not self.owner.got_close.called:
            self.owner.got_close.callback(code)


# -- 3. one logging policy -------------------------------------------------------------


class PeerLogTests(unittest.TestCase):
    """Bad input is counted and logged by a PeerLog, not by Autobahn."""

    def setUp(self) -> None:
        self.lines = Recorder()
        self.everything = Recorder()
        globalLogPublisher.addObserver(self.everything)
        self.addCleanup(globalLogPublisher.removeObserver, self.everything)

    def make_server(self, **options: Any) -> Tuple[MemoryServer, PeerLog]:
        clock = task.Clock()
        peer_log = PeerLog("websocket-test", clock=clock, logger=Logger(observer=self.lines))
        server = MemoryServer(peer_log=peer_log, **options)
        return server, peer_log

    def loud_global_events(self) -> List[str]:
        """Lines at warning level or above that reached the global log."""
        from twisted.logger import LogLevel, formatEvent
        return [formatEvent(e) for e in self.everything.events
                if e.get("log_level", LogLevel.info) >= LogLevel.warn]

    def test_a_thousand_bad_frames_from_one_peer_make_one_line(self) -> None:
        server, peer_log = self.make_server()
        for _ in range(1000):
            conn = server.connect("10.0.0.7")
            conn.send(upgrade_request("/echo") + client_frame(1, b"bad \xff\xfe" * 100))
            self.assertEqual(close_code_sent(conn.received()), 1007)
            conn.send(close_frame(1007))  # the peer answers the close: the server hangs up
            self.assertTrue(conn.lost)
        self.assertEqual(peer_log.counts, {"invalid UTF-8": 1000})
        self.assertEqual(len(self.lines.events), 1)
        line = self.lines.texts()[0]
        self.assertIn("10.0.0.7", line)
        self.assertIn("invalid UTF-8", line)
        self.assertLess(len(line), 400)
        self.assertNotIn("Traceback", line)
        self.assertEqual(self.loud_global_events(), [])

    def test_each_kind_of_bad_input_is_counted_under_its_name(self) -> None:
        server, peer_log = self.make_server(max_message_size=100)
        cases = [
            (client_frame(1, b"x" * 200), 1009),  # over max_message_size
            (client_frame(1, b"\xc0\xaf"), 1007),  # overlong UTF-8
            (bytes([0x81, 0x02]) + b"no", 1002),  # unmasked
            (client_frame(9, b"p" * 10, fin=False), 1002),  # fragmented ping
            (close_frame(1005), 1002),  # a code that never travels
        ]
        for i, (frame, code) in enumerate(cases):
            conn = server.connect(f"10.0.1.{i}")
            conn.send(upgrade_request("/echo") + frame)
            self.assertEqual(close_code_sent(conn.received()), code, frame)
        self.assertEqual(peer_log.counts, {"message too big": 1, "invalid UTF-8": 1,
                                           "protocol error": 3})
        self.assertEqual(len(self.lines.events), 5)  # five peers: one line each
        self.assertEqual(self.loud_global_events(), [])

    def test_a_peer_that_never_answers_the_close_is_counted(self) -> None:
        server, peer_log = self.make_server()
        conn = server.connect()
        conn.send(upgrade_request("/echo"))
        server.conns[0].close()
        self.assertEqual(close_code_sent(conn.received()), 1000)
        server.clock.advance(60)  # Autobahn's close handshake timeout
        self.assertTrue(conn.transport.disconnecting)
        self.assertEqual(peer_log.counts, {"close timeout": 1})
        self.assertEqual(self.loud_global_events(), [])

    def test_a_peer_that_never_answers_pings_is_counted(self) -> None:
        server, peer_log = self.make_server(ping_interval=1, ping_timeout=1)
        conn = server.connect()
        conn.send(upgrade_request("/echo"))
        server.clock.advance(1)
        self.assertEqual(server_frames(conn.received())[0][0], 9)  # a ping
        server.clock.advance(1)
        self.assertTrue(conn.transport.disconnecting)
        self.assertEqual(peer_log.counts, {"ping timeout": 1})
        self.assertEqual(self.loud_global_events(), [])

    def test_the_applications_own_oversized_put_is_not_the_peers_fault(self) -> None:
        server, peer_log = self.make_server(max_message_size=10)
        conn = server.connect()
        conn.send(upgrade_request("/echo"))
        server.conns[0].put("x" * 50)
        self.assertEqual(close_code_sent(conn.received()), 1009)
        self.assertEqual(peer_log.counts, {})
        self.assertEqual(len(self.loud_global_events()), 1)  # said once, by us

    def test_autobahn_log_demotes_peer_lines_and_keeps_errors(self) -> None:
        events = Recorder()

        class FakeTxaioLog:
            def debug(self, fmt: str, **kw: Any) -> None:
                events.events.append({"level": "debug", "fmt": fmt})

            def error(self, fmt: str, **kw: Any) -> None:
                events.events.append({"level": "error", "fmt": fmt})

            def failure(self, fmt: str, **kw: Any) -> None:
                events.events.append({"level": "failure", "fmt": fmt})

        log = _AutobahnLog(FakeTxaioLog())
        log.warn("failing WebSocket connection (code={code})", code=1002)
        log.info("failing WebSocket opening handshake ('{reason}')", reason="x")
        log.error("onConnect failed with {fail}", fail=None)
        log.failure("a bug")
        self.assertEqual([e["level"] for e in events.events],
                         ["debug", "debug", "error", "failure"])

    def test_site_peer_log_is_used_when_the_site_has_one(self) -> None:
        server = MemoryServer()
        site_log = PeerLog("site", clock=task.Clock(), logger=Logger(observer=self.lines))
        server.site.peer_log = site_log  # type: ignore[attr-defined]
        conn = server.connect()
        conn.send(upgrade_request("/echo") + client_frame(1, b"\xff"))
        self.assertEqual(site_log.counts, {"invalid UTF-8": 1})
