"""Graceful shutdown: what SIGTERM (twistd stopping the services) does.

HTTP runs in memory: ``MemoryReactorClock`` for the listening port and the
timers, ``StringTransport`` connections fed by hand, so each step (a response
finishing, the timeout passing) is the test's decision. WebSocket goodbyes
(close 1001) run over real sockets on 127.0.0.1, as the other WebSocket tests.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from klein import Klein
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.internet.error import ConnectionDone
from twisted.trial import unittest

from twisted_aleph import stream as s
from twisted_aleph.deferred import timeout
from twisted_aleph.http import start_server, websocket_client, websocket_connection
from twisted_aleph.http.server import HTTPServerService
from twisted_aleph.http.websocket import closed
from twisted_aleph.tcp import TCPServerService

WAIT = 10.0


def in_memory_app(body: s.Stream, later: Deferred) -> Klein:
    app = Klein()

    @app.route("/hello")
    def hello(request: Any) -> dict:
        return {"status": 200, "body": "hello"}

    @app.route("/stream")
    def streamed(request: Any) -> dict:
        return {"status": 200, "body": body}

    @app.route("/later")
    def delayed(request: Any) -> Deferred:
        return later

    return app


class Connection:
    """One in-memory HTTP connection to an AlephSite."""

    def __init__(self, site: Any) -> None:
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def get(self, path: str) -> None:
        self.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n\r\n")

    def lost(self) -> None:
        """The transport finished closing (what the reactor would report)."""
        self.channel.connectionLost(Failure(ConnectionDone()))

    @property
    def output(self) -> bytes:
        return self.transport.value()


class HTTPShutdownTests(unittest.TestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.body = s.Stream()
        self.later: Deferred = Deferred()
        self.server = start_server(in_memory_app(self.body, self.later), 8080,
                                   reactor=self.reactor)
        self.site = self.reactor.tcpServers[0][1]

    def connection(self) -> Connection:
        return Connection(self.site)

    def test_streamed_response_finishes_before_the_server_closes(self) -> None:
        busy = self.connection()
        busy.get("/stream")
        self.body.put(b"first ")
        idle = self.connection()
        idle.get("/hello")
        self.assertIn(b"hello", idle.output)

        done = self.server.shutdown(timeout=10)
        # the idle keep-alive connection is closed at once, the busy one is not
        self.assertTrue(idle.transport.disconnecting)
        self.assertFalse(busy.transport.disconnecting)
        idle.lost()
        self.assertNoResult(done)

        self.body.put(b"second")
        self.body.close()
        self.assertIn(b"first ", busy.output)
        self.assertIn(b"second", busy.output)
        self.assertTrue(busy.output.endswith(b"0\r\n\r\n"), busy.output[-40:])
        # the response is complete: now the connection closes, not before
        self.assertTrue(busy.transport.disconnecting)
        self.assertNoResult(done)
        busy.lost()
        self.successResultOf(done)
        self.assertFalse(busy.transport.disconnected, "finished in time: not aborted")
        # the timer that would have cut it is gone
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_response_still_open_at_the_timeout_is_cut(self) -> None:
        busy = self.connection()
        busy.get("/stream")
        self.body.put(b"first ")
        done = self.server.shutdown(timeout=10)
        self.reactor.advance(9.9)
        self.assertFalse(busy.transport.disconnecting)
        self.assertNoResult(done)
        self.reactor.advance(0.1)
        self.assertTrue(busy.transport.disconnected, "aborted at the timeout")
        busy.lost()
        self.successResultOf(done)
        self.assertTrue(self.body.is_closed, "the body's source is closed once cut")

    def test_response_not_started_says_connection_close(self) -> None:
        waiting = self.connection()
        waiting.get("/later")
        done = self.server.shutdown(timeout=10)
        self.assertEqual(waiting.output, b"")
        self.later.callback({"status": 200, "body": "late"})
        head = waiting.output.split(b"\r\n\r\n")[0].lower()
        self.assertIn(b"connection: close", head)
        self.assertTrue(waiting.output.endswith(b"late"))
        self.assertTrue(waiting.transport.disconnecting)
        waiting.lost()
        self.successResultOf(done)

    def test_request_still_arriving_gets_no_keep_alive(self) -> None:
        partial = self.connection()
        partial.send(b"GET /hello HTTP/1.1\r\nHost: te")
        done = self.server.shutdown(timeout=10)
        self.assertFalse(partial.transport.disconnecting)
        partial.send(b"st\r\n\r\n")
        self.assertIn(b"connection: close", partial.output.lower())
        self.assertTrue(partial.transport.disconnecting)
        partial.lost()
        self.successResultOf(done)

    def test_no_connection_means_done_at_once(self) -> None:
        self.successResultOf(self.server.shutdown(timeout=10))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_shutdown_twice_is_one_shutdown(self) -> None:
        busy = self.connection()
        busy.get("/stream")
        first = self.server.shutdown(timeout=10)
        second = self.server.shutdown(timeout=10)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.body.close()
        busy.lost()
        self.successResultOf(first)
        self.successResultOf(second)


class ServiceStopTests(unittest.TestCase):
    def test_http_service_stop_waits_for_the_response_in_flight(self) -> None:
        reactor = MemoryReactorClock()
        body = s.Stream()
        service = HTTPServerService(in_memory_app(body, Deferred()), 8080,
                                    shutdown_timeout=3, reactor=reactor,
                                    response_headers={"x-aleph-worker": "42"})
        service.startService()
        site = reactor.tcpServers[0][1]
        conn = Connection(site)
        conn.get("/stream")
        self.assertIn(b"x-aleph-worker: 42", conn.output.lower())
        stopped = service.stopService()
        self.assertNoResult(stopped)
        body.put(b"tail")
        body.close()
        conn.lost()
        self.successResultOf(stopped)
        self.assertIn(b"tail", conn.output)

    def test_http_service_stop_cuts_at_its_timeout(self) -> None:
        reactor = MemoryReactorClock()
        service = HTTPServerService(in_memory_app(s.Stream(), Deferred()), 8080,
                                    shutdown_timeout=3, reactor=reactor)
        service.startService()
        conn = Connection(reactor.tcpServers[0][1])
        conn.get("/stream")
        stopped = service.stopService()
        reactor.advance(3)
        self.assertTrue(conn.transport.disconnected)
        conn.lost()
        self.successResultOf(stopped)

    def tcp_service(self, handler: Any) -> Tuple[Any, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        service = TCPServerService(handler, 9090, shutdown_timeout=2, reactor=reactor)
        service.startService()
        return service, reactor

    def tcp_connection(self, reactor: MemoryReactorClock) -> Tuple[Any, StringTransport]:
        factory = reactor.tcpServers[0][1]
        proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        transport = StringTransport()
        proto.makeConnection(transport)
        return proto, transport

    def test_tcp_service_lets_the_handler_answer_then_hangs_up(self) -> None:
        streams: List[Any] = []
        service, reactor = self.tcp_service(lambda st, info: streams.append(st))
        proto, transport = self.tcp_connection(reactor)
        proto.dataReceived(frame(1) + frame(2))
        [st] = streams
        self.assertEqual(self.successResultOf(st.take()), 1)  # in the handler's hands
        stopped = service.stopService()
        self.assertFalse(transport.disconnecting, "the handler is still answering")
        self.assertEqual(transport.producerState, "paused")  # no more reading
        proto.dataReceived(frame(3))  # (already in the socket buffer: too late)
        self.assertEqual(self.successResultOf(st.take()), 2)  # what was received
        self.assertIsNone(self.successResultOf(st.take()))  # then the end of input
        self.successResultOf(st.put(10))
        self.assertNoResult(stopped)
        st.close()  # the handler is done
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), frame(10))
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)

    def test_tcp_pipeline_finishes_by_itself(self) -> None:
        from twisted_aleph.demo.tcp import fast_echo_handler, inc
        service, reactor = self.tcp_service(fast_echo_handler(inc))
        proto, transport = self.tcp_connection(reactor)
        proto.dataReceived(frame(1))
        stopped = service.stopService()
        self.assertTrue(transport.disconnecting, "map/connect closed the sink on end of input")
        self.assertEqual(transport.value(), frame(2))
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)

    def test_tcp_frames_held_back_by_a_slow_handler_still_reach_it(self) -> None:
        from twisted_aleph.tcp import INCOMING_BUFFER_SIZE
        streams: List[Any] = []
        service, reactor = self.tcp_service(lambda st, info: streams.append(st))
        proto, transport = self.tcp_connection(reactor)
        n = INCOMING_BUFFER_SIZE + 5
        proto.dataReceived(b"".join(frame(i) for i in range(n)) + frame(99)[:3])
        self.assertEqual(transport.producerState, "paused")  # backpressure: parsing stopped
        service.stopService()
        [st] = streams
        got = [self.successResultOf(st.take()) for _ in range(n + 1)]
        self.assertEqual(got, list(range(n)) + [None])  # every whole frame, then the end

    def test_tcp_handler_that_never_closes_is_aborted_at_the_timeout(self) -> None:
        streams: List[Any] = []
        service, reactor = self.tcp_service(lambda st, info: streams.append(st))
        proto, transport = self.tcp_connection(reactor)
        stopped = service.stopService()
        self.assertIsNone(self.successResultOf(streams[0].take()))  # told: input ended
        self.assertFalse(transport.disconnecting)
        self.assertNoResult(stopped)
        reactor.advance(2)
        self.assertTrue(transport.disconnected, "aborted at the timeout")
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)


def frame(value: Any) -> bytes:
    """One framed-EDN message as the wire carries it."""
    from twisted_aleph.tcp import encode_edn
    payload = encode_edn(value)
    return len(payload).to_bytes(4, "big") + payload


class WebSocketGoingAwayTests(unittest.TestCase):
    """Real sockets: the close handshake is Autobahn's, end to end."""

    def setUp(self) -> None:
        self.app = Klein()
        self.server_side: List[Any] = []

        @self.app.route("/keep")
        def keep(request: Any) -> Any:
            return websocket_connection(request).addCallback(self.server_side.append)

        @self.app.route("/hello")
        def hello(request: Any) -> dict:
            return {"status": 200, "body": "hello"}

        self.server = start_server(self.app, 0, interface="127.0.0.1",
                                   response_headers={"x-aleph-worker": "7"})
        self.addCleanup(self.server.close)

    async def _going_away(self) -> Tuple[Any, Any]:
        url = f"ws://127.0.0.1:{self.server.port}/keep"
        conns = [await timeout(websocket_client(url), WAIT) for _ in range(2)]
        self.addCleanup(lambda: [c.close() for c in conns])
        self.assertEqual(len(self.server.site.websockets), 2)
        # the handshake answer carries the site's headers too
        self.assertEqual(conns[0].info["headers"].get("x-aleph-worker"), "7")
        await timeout(self.server.shutdown(timeout=WAIT), WAIT)
        infos = [await timeout(closed(c), WAIT) for c in conns]
        return infos, conns

    def test_open_websockets_get_1001_and_the_server_waits_for_them(self) -> Deferred:
        def check(result: Tuple[Any, Any]) -> None:
            infos, conns = result
            for info in infos:
                self.assertEqual(info["close_code"], 1001)
                self.assertTrue(info["was_clean"])
            self.assertEqual(self.server.site.websockets, set())
            self.assertEqual(self.server.connections, set())
        return defer.ensureDeferred(self._going_away()).addCallback(check)


class SecureWebSocketGoingAwayTests(unittest.TestCase):
    """wss://: TLS sits between the connection the server tracks and the
    WebSocket that took it over; the graceful close still says 1001."""

    async def _going_away(self) -> None:
        import os

        from twisted_aleph import tls
        directory = self.mktemp()
        os.makedirs(directory)
        files = tls.generate_pki(directory)
        app = Klein()

        @app.route("/keep")
        def keep(request: Any) -> Any:
            return websocket_connection(request)

        server = start_server(app, 0, interface="127.0.0.1",
                              tls=tls.server_context(files.server_cert, files.server_key))
        self.addCleanup(server.close)
        conn = await timeout(websocket_client(f"wss://localhost:{server.port}/keep",
                                              tls=tls.client_context(ca=files.ca_cert)), WAIT)
        self.addCleanup(conn.close)
        await timeout(server.close(WAIT, graceful=True), WAIT)
        info = await timeout(closed(conn), WAIT)
        self.assertEqual((info["close_code"], info["was_clean"]), (1001, True))
        self.assertEqual(server.connections, set())

    def test_open_wss_gets_1001(self) -> Deferred:
        return defer.ensureDeferred(self._going_away())


class StatsdStopTests(unittest.TestCase):
    """The statsd service's stop: one more flush, given time to reach Graphite."""

    def setUp(self) -> None:
        from twisted.internet import task

        from twisted_aleph import statsd
        from tests.test_statsd import FakeEndpoint
        self.clock = task.Clock()
        self.endpoint = FakeEndpoint()  # Graphite down until the test says
        self.forwarder = statsd.GraphiteForwarder(
            "graphite", 2003, endpoint=self.endpoint, clock=self.clock,
            retry_policy=lambda attempt: 1.0)
        self.server = statsd.StatsdServer(flush_interval=10.0, graphite=self.forwarder,
                                          clock=self.clock)
        self.server.listening_port = self.reactor_port = _FakeUDPPort()
        self.forwarder.start()
        self.protocol = statsd.StatsdProtocol(self.server)

    def test_last_flush_waits_for_graphite_to_come_back(self) -> None:
        self.protocol.datagramReceived(b"last:1|c", ("10.0.0.1", 5000))
        closed_ = self.server.close(grace=5)
        self.assertTrue(self.reactor_port.stopped)
        self.assertEqual(len(self.forwarder.queue), 1, "flushed once more, queued")
        self.assertNoResult(closed_)
        self.endpoint.up = True
        self.clock.advance(1.0)  # the forwarder's retry connects, writes
        self.clock.advance(0)  # then stops: hangs up once that is written
        written = self.endpoint.transports[0].value()
        self.assertIn(b"stats.counters.last.count 1 ", written)
        self.assertTrue(self.endpoint.transports[0].disconnecting)
        self.assertNoResult(closed_)
        self.endpoint.protocols[0].connectionLost(None)
        self.successResultOf(closed_)

    def test_last_flush_given_up_at_the_timeout(self) -> None:
        self.protocol.datagramReceived(b"last:1|c", ("10.0.0.1", 5000))
        closed_ = self.server.close(grace=5)
        self.clock.advance(4.9)
        self.assertNoResult(closed_)
        self.clock.advance(0.1)
        self.clock.advance(0)
        self.successResultOf(closed_)
        self.assertEqual(self.endpoint.transports, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_service_passes_its_shutdown_timeout(self) -> None:
        from twisted_aleph.tap import statsd as tap_statsd
        options = tap_statsd.Options()
        options.parseOptions(["--shutdown-timeout", "2.5"])
        self.assertEqual(tap_statsd.makeService(options).shutdown_timeout, 2.5)
        from twisted.python import usage
        self.assertRaises(usage.UsageError, tap_statsd.Options().parseOptions,
                          ["--shutdown-timeout", "-1"])


class _FakeUDPPort:
    stopped = False

    def stopListening(self) -> None:
        self.stopped = True
