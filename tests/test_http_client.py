"""Client and server over real sockets on 127.0.0.1, and client pieces alone.

The seed's client demonstrations run against the seed's routes; the thread
variant of /numbers runs with a no-op sleep (no real waiting). Also: file and
streamed request bodies, TLS plumbing, Server.close, and a bad peer (malformed
request line, oversized headers) refused without hurting a good one.
"""

from __future__ import annotations

import gc
import itertools
import os
import tempfile
from typing import Any, List

from klein import Klein
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from twisted_aleph import bytestreams, deferred, http, stream, tls
from twisted_aleph.demo import http as demo
from twisted_aleph.http.body import BodyReceiver, StreamProducer
from twisted_aleph.http.testing import stub_pool
from twisted_aleph.server import SERVER_GC_THRESHOLD


class Collector(protocol.Protocol):
    """A raw TCP client: sends what it is told, keeps what comes back."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred = Deferred()
        self.got_data: List[Deferred] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        waiting, self.got_data = self.got_data, []
        for d in waiting:
            d.callback(self.received)

    def next_data(self) -> Deferred:
        d: Deferred = Deferred()
        self.got_data.append(d)
        return d

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(self.received)


class RealServerTests(unittest.TestCase):

    def serve(self, handler: Any, **kwargs: Any) -> Any:
        server = http.start_server(handler, 0, interface="127.0.0.1", **kwargs)
        self.addCleanup(server.close)
        return server

    def pool(self, **kwargs: Any) -> Any:
        pool = http.connection_pool(**kwargs)
        self.addCleanup(pool.close)
        return pool

    def seed_server(self) -> str:
        app = demo.make_app(numbers="thread", sleep=lambda seconds: None, websocket=False)
        return f"http://127.0.0.1:{self.serve(app).port}"

    @defer.inlineCallbacks
    def test_seed_client_examples(self) -> Any:
        base = self.seed_server()
        pool = self.pool()
        # deref-style: the body is a readable binary file
        resp = yield http.get(base + "/hello", pool=pool)
        self.assertEqual(bytestreams.to_string(resp["body"]), "hello world!")
        # chain
        text = yield deferred.chain(http.get(base + "/hello", pool=pool),
                                    "body", bytestreams.to_string)
        self.assertEqual(text, "hello world!")
        # to_line_seq with query params
        resp = yield http.get(base + "/numbers", query_params={"count": 10}, pool=pool)
        numbers = [int(line) for line in bytestreams.to_line_seq(resp["body"])]
        self.assertEqual(numbers, list(range(10)))
        # raw stream: map to bytes, reduce, to_string
        raw_pool = self.pool(raw_stream=True)
        text = yield deferred.chain(
            http.get(base + "/numbers", query_params={"count": 10}, pool=raw_pool),
            "body",
            lambda body: stream.map(bytestreams.to_bytes, body),
            lambda chunks: stream.reduce(lambda acc, x: acc + [x], [], chunks),
            bytestreams.to_string)
        self.assertEqual(text, "".join(f"{i}\n" for i in range(10)))

    @defer.inlineCallbacks
    def test_bad_count_over_the_wire(self) -> Any:
        base = self.seed_server()
        resp = yield http.get(base + "/numbers?count=abc", pool=self.pool())
        self.assertEqual(resp["status"], 400)
        self.assertEqual(resp["body"].read(), b"count must be a whole number, got 'abc'")

    @defer.inlineCallbacks
    def test_file_body_is_read_in_thread_and_closed(self) -> Any:
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.remove, path)
        data = os.urandom(200000)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        opened: List[Any] = []
        app = Klein()

        @app.route("/file")
        def serve_file(request: Any) -> dict:
            f = open(path, "rb")
            opened.append((f, request.notifyFinish()))
            return {"body": f}
        server = self.serve(app)
        resp = yield http.get(f"http://127.0.0.1:{server.port}/file", pool=self.pool())
        self.assertEqual(resp["headers"]["content-length"], str(len(data)))
        self.assertEqual(resp["body"].read(), data)
        f, finished = opened[0]
        yield finished  # the client may have it all before the server's EOF read
        self.assertTrue(f.closed)

    @defer.inlineCallbacks
    def test_post_stream_body_and_form(self) -> Any:
        app = Klein()

        @app.route("/echo", methods=["POST", "PUT"])
        def echo(request: Any) -> dict:
            return {"body": request.content.read()}

        @app.route("/form", methods=["POST"])
        def form(request: Any) -> dict:
            return {"body": request.params["name"]}
        base = f"http://127.0.0.1:{self.serve(app).port}"
        pool = self.pool()
        resp = yield http.post(base + "/echo", body=stream.stream_of([b"a", "b", b"c"]),
                               pool=pool)
        self.assertEqual(resp["body"].read(), b"abc")
        resp = yield http.put(base + "/echo", body="text", pool=pool)
        self.assertEqual(resp["body"].read(), b"text")
        resp = yield http.post(base + "/form", body={"name": "joe"}, pool=pool)
        self.assertEqual(resp["body"].read(), b"joe")
        resp = yield http.post(base + "/form", body=[("name", "ann")], pool=pool)
        self.assertEqual(resp["body"].read(), b"ann")
        for chunks in ([b"ab", "c\u00e9"], (b"ab", bytearray(b"c\xc3\xa9"))):
            resp = yield http.post(base + "/echo", body=chunks, pool=pool)
            self.assertEqual(resp["body"].read(), "abc\u00e9".encode())
        self.assertRaises(TypeError, http.post, base + "/echo", body=[b"a", 1], pool=pool)
        resp = yield http.delete(base + "/echo", pool=pool)
        self.assertEqual(resp["status"], 405)
        with self.assertRaises(http.HTTPError) as caught:
            yield http.delete(base + "/echo", pool=pool, throw_exceptions=True)
        self.assertEqual(caught.exception.response["status"], 405)

    @defer.inlineCallbacks
    def test_close_drops_streaming_connection_and_source(self) -> Any:
        source = stream.Stream()
        app = Klein()

        @app.route("/forever")
        def forever(request: Any) -> dict:
            return {"body": source}
        server = self.serve(app)
        resp = yield http.get(f"http://127.0.0.1:{server.port}/forever",
                              pool=self.pool(raw_stream=True))
        yield source.put(b"hello")
        first = yield resp["body"].take()
        self.assertEqual(first, b"hello")
        self.assertEqual(len(server.connections), 1)
        closed: Deferred = Deferred()
        resp["body"].on_drained(lambda: closed.callback(True))
        yield server.close()
        yield closed
        self.assertTrue(source.is_closed)

    @defer.inlineCallbacks
    def test_bad_peers_refused_good_one_unharmed(self) -> Any:
        source = stream.Stream()
        app = Klein()

        @app.route("/slow")
        def slow(request: Any) -> dict:
            return {"body": source}
        server = self.serve(app)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", server.port)
        good = yield endpoints.connectProtocol(endpoint, Collector())
        headers_seen = good.next_data()
        good.transport.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        yield headers_seen

        bad_line = yield endpoints.connectProtocol(endpoint, Collector())
        bad_line.transport.write(b"THIS IS NOT HTTP\r\n\r\n")
        refused = yield bad_line.closed
        self.assertTrue(refused.startswith(b"HTTP/1.1 400"), refused[:40])

        huge = yield endpoints.connectProtocol(endpoint, Collector())
        huge.transport.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000
                             + b"\r\n\r\n")
        refused = yield huge.closed
        # Refused and closed; the 400 itself may be lost to a TCP reset, as the
        # server closes with the rest of our header unread.
        self.assertTrue(refused == b"" or refused.startswith(b"HTTP/1.1 4"), refused[:40])

        more = good.next_data()
        yield source.put(b"still here")
        yield more
        self.assertIn(b"still here", good.received)
        source.close()
        good.transport.loseConnection()
        yield good.closed

    @defer.inlineCallbacks
    def test_https_with_tls_contexts(self) -> Any:
        directory = tempfile.mkdtemp()
        self.addCleanup(_remove_tree, directory)
        pki = tls.generate_pki(directory)
        server = self.serve(demo.make_app(websocket=False),
                            tls=tls.server_context(pki.server_cert, pki.server_key))
        pool = self.pool(tls=tls.client_context(ca=pki.ca_cert))
        resp = yield http.get(f"https://127.0.0.1:{server.port}/hello", pool=pool)
        self.assertEqual(bytestreams.to_string(resp["body"]), "hello world!")


class MaxBodyTests(unittest.TestCase):
    """A buffered pool reads at most ``max_body`` bytes, then hangs up."""

    def serve(self, handler: Any) -> str:
        server = http.start_server(handler, 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        return f"http://127.0.0.1:{server.port}"

    def pool(self, **kwargs: Any) -> Any:
        pool = http.connection_pool(**kwargs)
        self.addCleanup(pool.close)
        return pool

    def test_default_is_64_mib(self) -> None:
        from twisted_aleph.http import client
        self.assertEqual(client.DEFAULT_MAX_BODY, 64 * 1024 * 1024)
        pool = http.connection_pool()
        self.addCleanup(pool.close)
        self.assertEqual(pool.max_body, client.DEFAULT_MAX_BODY)
        self.assertEqual(stub_pool(Klein()).max_body, client.DEFAULT_MAX_BODY)

    @defer.inlineCallbacks
    def test_endless_chunked_body_fails_and_drops_the_connection(self) -> Any:
        from twisted_aleph.http.client import BodyTooLarge
        source = stream.to_source(itertools.repeat(b"x" * 4096))
        source_closed: Deferred = Deferred()
        source.on_closed(lambda: source_closed.callback(True))
        app = Klein()

        @app.route("/endless")
        def endless(request: Any) -> dict:
            return {"body": source}
        base = self.serve(app)
        d = http.get(base + "/endless", pool=self.pool(max_body=100000))
        with self.assertRaises(BodyTooLarge) as caught:
            yield d
        self.assertEqual(caught.exception.max_body, 100000)
        self.assertIn("exceeds max_body of 100000 bytes", str(caught.exception))
        self.assertIn(base, str(caught.exception))
        yield source_closed          # the server saw the client hang up

    @defer.inlineCallbacks
    def test_declared_length_over_the_cap_fails_before_reading(self) -> Any:
        from twisted_aleph.http.client import BodyTooLarge
        app = Klein()

        @app.route("/big")
        def big(request: Any) -> dict:
            return {"headers": {"content-length": "5000"}, "body": b"y" * 5000}
        base = self.serve(app)
        pool = self.pool(max_body=4999)
        with self.assertRaises(BodyTooLarge) as caught:
            yield http.get(base + "/big", pool=pool)
        self.assertEqual(caught.exception.length, 5000)
        # the same pool still works: exactly at the cap, and a per-request override
        resp = yield http.get(base + "/big", pool=pool, max_body=5000)
        self.assertEqual(resp["body"].read(), b"y" * 5000)
        resp = yield http.get(base + "/big", pool=pool, max_body=None)
        self.assertEqual(len(resp["body"].read()), 5000)

    @defer.inlineCallbacks
    def test_per_request_cap_beats_the_pool(self) -> Any:
        from twisted_aleph.http.client import BodyTooLarge
        app = Klein()

        @app.route("/ten")
        def ten(request: Any) -> bytes:
            return b"0123456789"
        base = self.serve(app)
        pool = self.pool()
        with self.assertRaises(BodyTooLarge):
            yield http.get(base + "/ten", pool=pool, max_body=9)
        resp = yield http.get(base + "/ten", pool=pool)
        self.assertEqual(resp["body"].read(), b"0123456789")

    def test_stub_pool_cap(self) -> None:
        from twisted_aleph.http.client import BodyTooLarge
        app = Klein()

        @app.route("/ten")
        def ten(request: Any) -> dict:
            return {"body": stream.stream_of([b"01234", b"56789"])}
        pool = stub_pool(app)
        pool.max_body = 7
        d = http.get("http://test/ten", pool=pool)
        pool.flush()
        self.failureResultOf(d, BodyTooLarge)
        d = http.get("http://test/ten", pool=pool, max_body=10)
        pool.flush()
        self.assertEqual(self.successResultOf(d)["body"].read(), b"0123456789")


class WebSocketContractTests(unittest.TestCase):
    """The HTTP server hands an upgraded connection over and writes nothing."""

    @defer.inlineCallbacks
    def test_demo_echo_over_this_server(self) -> Any:
        server = http.start_server(demo.make_app(), 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        conn = yield http.websocket_client(f"ws://127.0.0.1:{server.port}/echo")
        yield conn.put("hello")
        echoed = yield conn.take()
        self.assertEqual(echoed, "hello")
        closed: Deferred = Deferred()
        conn.on_drained(lambda: closed.callback(None))
        conn.close()
        yield closed

    @defer.inlineCallbacks
    def test_plain_get_on_websocket_route_is_400(self) -> Any:
        server = http.start_server(demo.make_app(), 0, interface="127.0.0.1")
        self.addCleanup(server.close)
        pool = http.connection_pool()
        self.addCleanup(pool.close)
        resp = yield http.get(f"http://127.0.0.1:{server.port}/echo", pool=pool)
        self.assertEqual(resp["status"], 400)
        self.assertEqual(resp["body"].read(), b"Expected a websocket request.")


def _remove_tree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


class BodyPiecesTests(unittest.TestCase):
    """The producer and receiver alone."""

    def test_receiver_pauses_transport_until_stream_takes(self) -> None:
        sink = stream.Stream()
        receiver = BodyReceiver(sink)
        transport = StringTransport()
        receiver.makeConnection(transport)
        receiver.dataReceived(b"one")
        self.assertEqual(transport.producerState, "paused")
        receiver.dataReceived(b"two")  # already in flight: queued, still paused
        self.assertEqual(self.successResultOf(sink.take()), b"one")
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(self.successResultOf(sink.take()), b"two")
        self.assertEqual(transport.producerState, "producing")

    def test_receiver_closing_sink_stops_transport(self) -> None:
        sink = stream.Stream()
        receiver = BodyReceiver(sink)
        transport = StringTransport()
        receiver.makeConnection(transport)
        sink.close()
        self.assertEqual(transport.producerState, "stopped")

    def test_producer_pause_resume_stop(self) -> None:
        written: List[bytes] = []

        class Consumer:
            def write(self, data: bytes) -> None:
                written.append(data)
        source = stream.Stream()
        producer = StreamProducer(Consumer())
        finished = producer.start(source)
        source.offer("a")
        producer.pauseProducing()
        source.offer(b"b")
        waiting = source.offer(b"c")
        self.assertIsInstance(waiting, Deferred)
        self.assertEqual(written, [b"a", b"b"])
        producer.resumeProducing()
        self.assertEqual(written, [b"a", b"b", b"c"])
        producer.stopProducing()
        self.assertTrue(source.is_closed)
        self.assertIs(self.successResultOf(finished), False)

    def test_stub_pool_post_with_stream_body(self) -> None:
        app = Klein()

        @app.route("/echo", methods=["POST"])
        def echo(request: Any) -> dict:
            return {"body": request.content.read()}
        pool = stub_pool(app)
        d = http.post("http://test/echo", body=stream.stream_of(["x", "y"]), pool=pool)
        pool.flush()
        self.assertEqual(self.successResultOf(d)["body"].read(), b"xy")


class PluginTests(unittest.TestCase):
    """``twistd aleph-http``: options parsed, the service serves and stops."""

    def load_plugin(self) -> Any:
        import importlib.util
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "twisted", "plugins", "aleph_http.py")
        spec = importlib.util.spec_from_file_location("aleph_http_plugin", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module

    def test_every_option_reaches_the_service(self) -> None:
        plugin = self.load_plugin()
        options = plugin.aleph_http.options()
        options.parseOptions(["--port", "10124", "--interface", "127.0.0.2",
                              "--shutdown-timeout", "2.5", "--gc-threshold", "4321",
                              "--app", "twisted_aleph.demo.http:hello_world_handler"])
        service = plugin.aleph_http.makeService(options)
        self.assertEqual((service.port, service.interface, service.shutdown_timeout,
                          service.gc_threshold), (10124, "127.0.0.2", 2.5, 4321))
        self.assertIs(service.handler, demo.hello_world_handler)

    @defer.inlineCallbacks
    def test_service_serves_default_app(self) -> Any:
        plugin = self.load_plugin()
        options = plugin.aleph_http.options()
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1"])
        service = plugin.aleph_http.makeService(options)
        service.startService()
        self.addCleanup(service.stopService)
        # the ready server tunes CPython's collector while it runs (tests/test_server.py)
        self.assertEqual(service.gc_threshold, SERVER_GC_THRESHOLD)
        if hasattr(gc, "freeze"):
            self.assertEqual(gc.get_threshold()[0], SERVER_GC_THRESHOLD)
        pool = http.connection_pool()
        self.addCleanup(pool.close)
        resp = yield http.get(f"http://127.0.0.1:{service.server.port}/hello", pool=pool)
        self.assertEqual(resp["body"].read(), b"hello world!")

    def test_bad_app_option(self) -> None:
        from twisted.python import usage
        plugin = self.load_plugin()
        for bad in ("no_colon", "twisted_aleph.demo.http:missing", "no.such.module:app"):
            self.assertRaises(usage.UsageError, plugin.aleph_http.options().parseOptions, ["--app", bad])

    def test_app_option_loads_callable(self) -> None:
        plugin = self.load_plugin()
        options = plugin.aleph_http.options()
        options.parseOptions(["--app", "twisted_aleph.demo.http:hello_world_handler"])
        self.assertIs(options["handler"], demo.hello_world_handler)


class FailedRequestBodyTests(unittest.TestCase):
    """A stream request body is closed when the request fails before sending it."""

    @defer.inlineCallbacks
    def test_refused_connection_closes_stream_body(self) -> Any:
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        pool = http.connection_pool()
        self.addCleanup(pool.close)
        body = stream.Stream(description="request body")
        closed: Deferred = Deferred()
        body.on_closed(lambda: closed.callback(True))
        d = http.post(f"http://127.0.0.1:{port}/", body=body, pool=pool)
        from twisted.internet.error import ConnectionRefusedError as Refused
        yield self.assertFailure(d, Refused)
        self.assertTrue(body.is_closed)  # a feeder's puts no longer wait
        self.assertTrue((yield closed))
    test_refused_connection_closes_stream_body.timeout = 10  # type: ignore[attr-defined]


class _Stall(protocol.Protocol):
    """A raw HTTP server that sends ``reply`` once a request arrives, then stalls."""

    def __init__(self, reply: bytes, lost: Deferred) -> None:
        self.reply = reply
        self.lost = lost

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data and self.reply:
            self.transport.write(self.reply)
            self.reply = b""

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(True)


class TimeoutTests(unittest.TestCase):
    """``timeout=`` bounds headers and a buffered body; raw pools: the headers."""

    HEADERS = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello"

    def stall(self, reply: bytes) -> Any:
        """URL of a server that sends ``reply`` then stalls, and a Deferred
        fired when the server sees its connection closed."""
        lost: Deferred = Deferred()
        factory = protocol.Factory()
        factory.protocol = lambda: _Stall(reply, lost)  # type: ignore[assignment,misc]
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}/", lost

    def pool(self, **kwargs: Any) -> Any:
        pool = http.connection_pool(**kwargs)
        self.addCleanup(pool.close)
        return pool

    @defer.inlineCallbacks
    def test_stalled_body_times_out_and_drops_the_connection(self) -> Any:
        url, lost = self.stall(self.HEADERS)
        d = http.get(url, pool=self.pool(), timeout=0.2)
        failure = yield self.assertFailure(d, defer.TimeoutError)
        self.assertIn("timed out after 0.2 s", str(failure))
        self.assertTrue((yield lost))  # hung up, not kept in the pool
    test_stalled_body_times_out_and_drops_the_connection.timeout = 10  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_stalled_headers_time_out_the_same_way(self) -> Any:
        url, lost = self.stall(b"")
        d = http.get(url, pool=self.pool(), timeout=0.2)
        yield self.assertFailure(d, defer.TimeoutError)
        self.assertTrue((yield lost))
    test_stalled_headers_time_out_the_same_way.timeout = 10  # type: ignore[attr-defined]

    @defer.inlineCallbacks
    def test_timer_on_pool_clock_and_cancelled_when_done(self) -> Any:
        from twisted.internet.task import Clock
        from twisted_aleph.http.client import ConnectionPool
        url, _ = self.stall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        clock = Clock()
        pool = ConnectionPool(self.pool().agent, reactor=clock)
        d = http.get(url, pool=pool, timeout=5)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        resp = yield d
        self.assertEqual(resp["body"].read(), b"ok")
        self.assertEqual(clock.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_raw_stream_pool_bounds_only_the_headers(self) -> Any:
        from twisted.internet.task import Clock
        from twisted_aleph.http.client import ConnectionPool
        url, lost = self.stall(self.HEADERS)
        clock = Clock()
        raw = self.pool(raw_stream=True)
        pool = ConnectionPool(raw.agent, raw_stream=True, reactor=clock)
        resp = yield http.get(url, pool=pool, timeout=5)
        self.assertEqual(resp["status"], 200)
        self.assertEqual(clock.getDelayedCalls(), [])  # the body is the caller's to time
        self.assertFalse(resp["body"].is_closed)
        resp["body"].close()  # closing it early drops the connection
        self.assertTrue((yield lost))
    test_raw_stream_pool_bounds_only_the_headers.timeout = 10  # type: ignore[attr-defined]
