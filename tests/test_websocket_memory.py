"""WebSocket memory: a closed connection is freed by reference counting alone.

A ready server tunes CPython's cyclic collector to run rarely
(``twisted_aleph.server.tune_gc``), so a closed connection caught in a
reference cycle stays in memory until a full collection: 40,000 of them were
~200 MB (``bench/ws_memory.py`` measures it). These tests turn the collector
off, open and close connections over real sockets, and check through weak
references that the protocol, its stream and the HTTP channel it took over are
gone as soon as the connection is: on the server (with and without
permessage-deflate, over TLS, whoever closes and however) and on the client.
CPython only: PyPy has no reference counting, its collector frees everything.
On both: permessage-deflate's zlib compressor, memory the collector does not
see, is ended when its connection closes.
"""

from __future__ import annotations

import gc
import os
import platform
import weakref
import zlib
from typing import Any, Dict, List

from klein import Klein
from twisted.internet import defer, reactor, task
from twisted.internet.defer import Deferred
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.http import start_server
from twisted_aleph.http.websocket import closed, websocket_client, websocket_close, websocket_connection

from .test_websocket import bounded, client_frame, close_code_sent, raw_connect, upgrade_request

CPYTHON = platform.python_implementation() == "CPython"


def settled() -> Deferred:
    """A Deferred firing on a later reactor turn: the connectionLost calls
    that fired the Deferreds a test awaited have returned by then."""
    return task.deferLater(reactor, 0, lambda: None)


class WatchedServer:
    """Serves ``/echo`` and ``/close-after-one`` (answers one message, then
    closes), holding only weak references to what each connection made."""

    def __init__(self, case: unittest.TestCase, tls: Any = None, **ws_options: Any) -> None:
        self.refs: List[Dict[str, Any]] = []
        self.ended: List[Deferred] = []
        self.opened: Deferred = Deferred()
        app = Klein()

        def watch(request: Any, then: Any) -> Deferred:
            refs = {"channel": weakref.ref(request.channel), "request": weakref.ref(request)}
            self.refs.append(refs)

            def upgraded(conn: Any) -> None:
                refs["protocol"] = weakref.ref(conn.sink.protocol)
                refs["stream"] = weakref.ref(conn)
                refs["incoming"] = weakref.ref(conn.source)
                self.ended.append(closed(conn))
                then(conn)
                waiter, self.opened = self.opened, Deferred()
                waiter.callback(None)
            return websocket_connection(request, **ws_options).addCallback(upgraded)

        @app.route("/echo")
        def echo(request: Any) -> Deferred:
            return watch(request, lambda conn: s.connect(conn, conn))

        @app.route("/close-after-one")
        def close_after_one(request: Any) -> Deferred:
            def then(conn: Any) -> None:
                conn.take().addCallback(conn.put).addCallback(lambda _: conn.close())
            return watch(request, then)

        self.scheme = "ws" if tls is None else "wss"
        self.server = start_server(app, 0, interface="127.0.0.1", tls=tls)
        case.addCleanup(self.server.close)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.port}{path}"

    async def all_ended(self) -> None:
        for d in self.ended:
            await bounded(d)
        await settled()

    def alive(self) -> List[str]:
        """What of the server's connections is still in memory."""
        return [f"{name} of connection {i}" for i, refs in enumerate(self.refs)
                for name, ref in refs.items() if ref() is not None]


class FreedWithoutTheCollectorTests(unittest.TestCase):
    """With gc disabled, a closed connection's objects are gone at once."""

    def setUp(self) -> None:
        if not CPYTHON:
            raise unittest.SkipTest("PyPy has no reference counting: its garbage "
                                    "collector frees closed connections, cycles or not")
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    async def _client_closes(self, compression: bool) -> None:
        server = WatchedServer(self)
        for i in range(3):
            conn = await bounded(websocket_client(server.url("/echo"), compression=compression))
            self.assertEqual(conn.info["extensions"],
                             ["permessage-deflate"] if compression else [])
            await conn.put(f"hello {i}")
            self.assertEqual(await bounded(conn.take()), f"hello {i}")
            await bounded(websocket_close(conn))
            del conn
        await server.all_ended()
        self.assertEqual(len(server.refs), 3)
        self.assertEqual(server.alive(), [])

    def test_server_side_with_permessage_deflate(self) -> Deferred:
        return defer.ensureDeferred(self._client_closes(True))

    def test_server_side_without_compression(self) -> Deferred:
        return defer.ensureDeferred(self._client_closes(False))

    async def _server_closes(self) -> None:
        server = WatchedServer(self)
        conn = await bounded(websocket_client(server.url("/close-after-one")))
        await conn.put("one")
        self.assertEqual(await bounded(conn.take()), "one")
        self.assertIsNone(await bounded(conn.take()))
        self.assertEqual(conn.info["close_code"], 1000)
        await bounded(closed(conn))
        del conn
        await server.all_ended()
        self.assertEqual(server.alive(), [])

    def test_server_side_when_the_server_closes(self) -> Deferred:
        return defer.ensureDeferred(self._server_closes())

    async def _peer_vanishes_or_misbehaves(self) -> None:
        server = WatchedServer(self)
        vanishing = await raw_connect(self, server.server.port)
        vanishing.transport.write(upgrade_request("/echo"))
        await bounded(server.opened)
        vanishing.transport.abortConnection()
        bad = await raw_connect(self, server.server.port)
        bad.transport.write(upgrade_request("/echo"))
        await bounded(server.opened)
        bad.transport.write(client_frame(1, b"not UTF-8 \xff"))
        data = await bad.wait_for(lambda d: close_code_sent(d) is not None)
        self.assertEqual(close_code_sent(data), 1007)
        bad.transport.write(client_frame(8, (1007).to_bytes(2, "big")))
        await server.all_ended()
        self.assertEqual(len(server.refs), 2)
        self.assertEqual(server.alive(), [])

    def test_server_side_when_the_peer_vanishes_or_sends_bad_input(self) -> Deferred:
        return defer.ensureDeferred(self._peer_vanishes_or_misbehaves())

    async def _over_tls(self) -> None:
        from twisted_aleph import tls
        directory = self.mktemp()
        os.makedirs(directory)
        files = tls.generate_pki(directory)
        server = WatchedServer(self, tls=tls.server_context(files.server_cert, files.server_key))
        conn = await bounded(websocket_client(server.url("/echo"),
                                              tls=tls.client_context(ca=files.ca_cert)))
        await conn.put("secret")
        self.assertEqual(await bounded(conn.take()), "secret")
        await bounded(websocket_close(conn))
        del conn
        await server.all_ended()
        self.assertEqual(server.alive(), [])

    def test_server_side_over_tls(self) -> Deferred:
        return defer.ensureDeferred(self._over_tls())

    async def _client_side(self, compression: bool) -> None:
        server = WatchedServer(self)
        conn = await bounded(websocket_client(server.url("/echo"), compression=compression))
        protocol = weakref.ref(conn.sink.protocol)
        streams = [weakref.ref(conn), weakref.ref(conn.sink), weakref.ref(conn.source)]
        await conn.put(b"bytes")
        self.assertEqual(await bounded(conn.take()), b"bytes")
        info = await bounded(websocket_close(conn))
        self.assertTrue(info["was_clean"])
        await server.all_ended()
        # The user's stream keeps its protocol (websocket_close needs it)...
        self.assertIsNotNone(protocol())
        del conn
        # ...and nothing else does.
        self.assertIsNone(protocol())
        self.assertEqual([ref() for ref in streams], [None, None, None])

    def test_client_side_with_permessage_deflate(self) -> Deferred:
        return defer.ensureDeferred(self._client_side(True))

    def test_client_side_without_compression(self) -> Deferred:
        return defer.ensureDeferred(self._client_side(False))


class DeflateMemoryTests(unittest.TestCase):
    """permessage-deflate's zlib memory is released when the connection
    closes, not when a collector gets round to its objects (PyPy's rarely
    does: it does not see zlib's memory)."""

    async def _compressor_ended(self) -> None:
        server = WatchedServer(self)
        conn = await bounded(websocket_client(server.url("/echo")))
        await conn.put("compress me " * 20)
        self.assertEqual(await bounded(conn.take()), "compress me " * 20)
        protocol = server.refs[0]["protocol"]()
        deflate = protocol._perMessageCompress
        compressor = deflate._compressor
        self.assertIsNotNone(compressor)
        compressor.compress(b"still usable")
        del protocol
        await bounded(websocket_close(conn))
        await server.all_ended()
        self.assertIsNone(deflate._compressor)
        self.assertIsNone(deflate._decompressor)
        with self.assertRaises(zlib.error):  # its zlib stream is ended: memory freed
            compressor.compress(b"x")

    def test_closing_ends_the_zlib_compressor(self) -> Deferred:
        return defer.ensureDeferred(self._compressor_ended())
