"""twisted_aleph.tcp over real sockets on 127.0.0.1 (port 0).

The seed's demonstrations, the wire format spoken by an independent raw
Twisted protocol (frames packed by hand with ``struct``), bad peers next to
good ones, a peer that never reads, TLS, and ``twistd aleph-tcp``.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List

from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.plugin import getPlugins
from twisted.trial import unittest

from twisted_aleph import tcp, tls
from twisted_aleph.demo import tcp as demo
from twisted_aleph.server import Server

END = object()


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def lost(stream: Any) -> Deferred:
    """Fires once the connection behind ``stream`` is gone (its source closed)."""
    d: Deferred = Deferred()
    stream.source.on_closed(lambda: d.called or d.callback(None))
    return d


def drained(stream: Any) -> Deferred:
    d: Deferred = Deferred()
    stream.on_drained(lambda: d.callback(None))
    return d


class RawPeer(Protocol):
    """A plain Twisted client: bytes in, bytes out, nothing of ours."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred = Deferred()
        self._waiting: List[Any] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self._check()

    def frames(self) -> List[bytes]:
        out, data = [], self.received
        while len(data) >= 4:
            (n,) = struct.unpack(">I", data[:4])
            if len(data) < 4 + n:
                break
            out.append(data[4:4 + n])
            data = data[4 + n:]
        return out

    def wait_frames(self, n: int) -> Deferred:
        d: Deferred = Deferred()
        self._waiting.append((n, d))
        self._check()
        return d

    def _check(self) -> None:
        frames = self.frames()
        for item in list(self._waiting):
            if len(frames) >= item[0]:
                self._waiting.remove(item)
                item[1].callback(frames)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(None)


class SocketTestCase(unittest.TestCase):
    """Helpers that start servers and clients and clean up after them."""

    def serve(self, start: Callable[..., Server], handler: Callable[[Any, dict], Any],
              **options: Any) -> Server:
        streams: List[Any] = []

        def tracking(stream: Any, info: dict) -> Any:
            streams.append(stream)
            return handler(stream, info)

        server = start(tracking, 0, interface="127.0.0.1", **options)
        self.server_streams = streams

        async def stop() -> None:
            await server.close()
            for st in streams:
                st.close()
                await lost(st)
        self.addCleanup(lambda: ensureDeferred(stop()))
        return server

    async def connect(self, connect: Callable[..., Deferred], port: int, **options: Any) -> Any:
        c = await connect("127.0.0.1", port, **options)

        def stop() -> Deferred:
            c.close()
            return lost(c)
        self.addCleanup(stop)
        return c

    async def raw_peer(self, port: int) -> RawPeer:
        peer = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), RawPeer())

        def stop() -> Deferred:
            peer.transport.loseConnection()
            return peer.done
        self.addCleanup(stop)
        return peer


class SeedDemonstrationTests(SocketTestCase):
    async def test_fast_echo(self) -> None:
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc))
        c = await self.connect(demo.client, s.port)
        self.assertIs(await c.put(1), True)   # ;=> true
        self.assertEqual(await c.take(), 2)   # ;=> 2

    async def test_slow_echo(self) -> None:
        def slow_inc(x: int) -> int:  # runs in the thread pool; no real sleep
            return x + 1
        for make in (demo.slow_echo_handler, demo.slow_echo_handler_async):
            s = self.serve(demo.start_server, make(slow_inc))
            c = await self.connect(demo.client, s.port)
            self.assertIs(await c.put(1), True)
            self.assertEqual(await c.take(), 2)
            self.assertIs(await c.put(10), True)
            self.assertEqual(await c.take(), 11)

    async def test_seed_codec_construction(self) -> None:
        """wrap_duplex_stream over raw TCP, and its interop with the fast path."""
        pairs = [(demo.start_codec_server, demo.codec_client),
                 (demo.start_codec_server, demo.client),
                 (demo.start_server, demo.codec_client)]
        for start, connect in pairs:
            s = self.serve(start, demo.fast_echo_handler(demo.inc))
            c = await self.connect(connect, s.port)
            for i in range(3):
                self.assertIs(await c.put(i), True)
            self.assertEqual([await c.take() for _ in range(3)], [1, 2, 3])

    async def test_many_in_flight(self) -> None:
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc))
        c = await self.connect(demo.client, s.port)
        n = 2000
        puts = [c.put(i) for i in range(n)]
        self.assertEqual([await c.take() for _ in range(n)], list(range(1, n + 1)))
        self.assertTrue(all([await d for d in puts]))


class WireFormatTests(SocketTestCase):
    """The framing, checked by a peer that packs frames by hand."""

    async def test_hand_packed_frames(self) -> None:
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc))
        peer = await self.raw_peer(s.port)
        data = frame(b"1") + frame(b"41") + frame(b"-1")
        peer.transport.write(data[:3])
        peer.transport.write(data[3:9])
        peer.transport.write(data[9:])
        self.assertEqual(await peer.wait_frames(3), [b"2", b"42", b"0"])

    async def test_raw_byte_streams(self) -> None:
        infos: List[dict] = []

        def echo(stream: Any, info: dict) -> None:
            infos.append(info)
            demo.s.connect(stream, stream)
        s = self.serve(tcp.start_server, echo)
        c = await self.connect(tcp.client, s.port)
        await c.put(b"hello ")
        await c.put("wörld")
        got = b""
        while len(got) < len("hello wörld".encode()):
            got += await c.take()
        self.assertEqual(got, "hello wörld".encode())
        self.assertEqual(infos[0]["remote_addr"], "127.0.0.1")
        self.assertEqual(infos[0]["server_port"], s.port)

    async def test_server_close_drops_connections(self) -> None:
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc))
        c = await self.connect(demo.client, s.port)
        await c.put(1)
        self.assertEqual(await c.take(), 2)
        self.assertEqual(len(s.connections), 1)
        await s.close()
        self.assertIsNone(await c.take())
        self.assertTrue(c.is_drained)
        await lost(self.server_streams[0])
        self.assertEqual(len(s.connections), 0)


class ClientTests(SocketTestCase):
    async def test_refused_connection_fails_the_deferred(self) -> None:
        s = self.serve(tcp.start_server, lambda st, info: None)
        port = s.port
        await s.close()
        for connect in (tcp.client, tcp.framed_client, demo.codec_client):
            with self.assertRaises(ConnectError):
                await connect("127.0.0.1", port)


class BadPeerTests(SocketTestCase):
    """Each bad peer loses its own connection; the server serves the others."""

    async def assert_still_serving(self, port: int) -> None:
        c = await self.connect(demo.client, port)
        await c.put(7)
        self.assertEqual(await c.take(), 8)

    async def test_length_over_maximum(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc), max_length=1000)
        good = await self.connect(demo.client, s.port)
        bad = await self.raw_peer(s.port)
        bad.transport.write(frame(b"1") + struct.pack(">I", 1001))
        await bad.done
        self.assertEqual(bad.frames(), [b"2"])
        await good.put(1)
        self.assertEqual(await good.take(), 2)
        await self.assert_still_serving(s.port)

    async def test_bad_payload_with_slow_handler(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        s = self.serve(demo.start_server, demo.slow_echo_handler(demo.inc))
        for payload in [b"\xff\xfe", b"[1 2"]:
            bad = await self.raw_peer(s.port)
            bad.transport.write(frame(payload))
            await bad.done
            [reply] = bad.frames()
            self.assertTrue(reply.startswith(b'"ERROR: could not decode a '), reply)
            self.assertNotIn(b"Traceback", reply)
        await self.assert_still_serving(s.port)

    async def test_bad_payload_with_fast_handler(self) -> None:
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc))
        bad = await self.raw_peer(s.port)
        bad.transport.write(frame(b"1") + frame(b"#{"))
        await bad.done
        self.assertEqual(bad.frames(), [b"2"])
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        await self.assert_still_serving(s.port)

    async def test_bad_payload_on_the_codec_path(self) -> None:
        """wrap_duplex_stream: the codec logs a bad frame and closes that connection."""
        EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        s = self.serve(demo.start_codec_server, demo.fast_echo_handler(demo.inc))
        bad = await self.raw_peer(s.port)
        # the good frame's reply goes out before that connection is closed,
        # even when the bad frame arrives in the same read
        bad.transport.write(frame(b"1") + frame(b"\xff"))
        await bad.done
        self.assertEqual(bad.frames(), [b"2"])
        await self.assert_still_serving(s.port)

    async def test_disconnect_mid_frame(self) -> None:
        s = self.serve(demo.start_server, demo.fast_echo_handler(demo.inc))
        bad = await self.raw_peer(s.port)
        bad.transport.write(frame(b"1") + frame(b"12345")[:6])
        await bad.wait_frames(1)
        bad.transport.loseConnection()
        await bad.done
        await drained(self.server_streams[0])  # closed, nothing half-read delivered
        await self.assert_still_serving(s.port)

    async def test_peer_that_never_reads(self) -> None:
        """A flood of puts is held back by the real TCP transport after about
        its 64 KiB write buffer (the writer is its registered producer), not
        buffered without limit; the held put completes once the peer reads."""
        chunk = b"x" * 65536
        flooded: Deferred = Deferred()

        def flood(stream: Any, info: dict) -> None:
            for accepted in range(1000):
                r = stream.offer(chunk)
                if r is not True:
                    flooded.callback((accepted, r))
                    return
            flooded.callback((1000, None))

        s = self.serve(tcp.start_server, flood)
        peer = await self.raw_peer(s.port)
        accepted, pending = await flooded
        self.assertLessEqual(accepted, 3)
        self.assertIsInstance(pending, Deferred)
        self.assertIs(await pending, True)
        self.server_streams[0].close()
        await peer.done
        self.assertEqual(len(peer.received), (accepted + 1) * len(chunk))


class TLSTests(SocketTestCase):
    async def test_framed_echo_over_tls(self) -> None:
        pki = tls.generate_pki(_mkdir(self.mktemp()))
        infos: List[dict] = []

        def handler(stream: Any, info: dict) -> None:
            infos.append(info)
            demo.fast_echo_handler(demo.inc)(stream, info)

        s = self.serve(demo.start_server, handler,
                       tls=tls.server_context(pki.server_cert, pki.server_key))
        c = await self.connect(demo.client, s.port, tls=tls.client_context(ca=pki.ca_cert))
        await c.put(1)
        self.assertEqual(await c.take(), 2)
        self.assertIsNotNone(infos[0]["ssl_session"])


def _mkdir(path: str) -> str:
    import os
    os.makedirs(path)
    return path


class PluginTests(SocketTestCase):
    def maker(self) -> Any:
        [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == "aleph-tcp"]
        return maker

    async def test_twistd_aleph_tcp(self) -> None:
        maker = self.maker()
        options = maker.options()
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1",
                              "--handler", "inc", "--max-frame", "1000",
                              "--gc-threshold", "0"])
        service = maker.makeService(options)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(service.max_length, 1000)
        self.assertEqual(service.gc_threshold, 0)  # asked to leave the collector alone
        c = await self.connect(demo.client, service.server.port)
        await c.put(1)
        self.assertEqual(await c.take(), 2)

    def test_gc_threshold_reaches_the_service(self) -> None:
        from twisted_aleph.server import SERVER_GC_THRESHOLD
        maker = self.maker()
        for argv, expected in [([], SERVER_GC_THRESHOLD), (["--gc-threshold", "4321"], 4321)]:
            options = maker.options()
            options.parseOptions(argv)
            self.assertEqual(maker.makeService(options).gc_threshold, expected)

    def test_every_option_reaches_the_service(self) -> None:
        options = self.maker().options()
        options.parseOptions(["--port", "10123", "--interface", "127.0.0.2",
                              "--handler", "tests.test_tcp_sockets:closing_handler",
                              "--max-frame", "77", "--shutdown-timeout", "2.5"])
        service = self.maker().makeService(options)
        self.assertEqual((service.port, service.interface, service.max_length,
                          service.shutdown_timeout), (10123, "127.0.0.2", 77, 2.5))
        self.assertIs(service.handler, closing_handler)

    def test_bad_handler_option(self) -> None:
        from twisted.python import usage
        options = self.maker().options()
        self.assertRaises(usage.UsageError, options.parseOptions, ["--handler", "nonsense"])


def closing_handler(stream: Any, info: Any) -> None:
    """A ``--handler module:callable`` for the plugin tests: hangs up at once."""
    stream.close()
