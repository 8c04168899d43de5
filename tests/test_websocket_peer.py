"""What a WebSocket peer sends that the server must take in its stride.

* frames sent in the same packet as the opening handshake are not lost.

In-memory connections (one ``dataReceived`` per packet, a ``task.Clock``)
where the split of bytes into reads matters; real sockets on 127.0.0.1
otherwise.
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

from klein import Klein
from twisted.internet import defer, reactor, task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.server import Site

from twisted_aleph import stream as s
from twisted_aleph.http import start_server
from twisted_aleph.http.resource import handler_resource
from twisted_aleph.http.websocket import (
    websocket_connection,
)

from .test_websocket import RawClient, bounded, client_frame, upgrade_request

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
