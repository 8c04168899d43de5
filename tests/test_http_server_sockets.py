"""The HTTP server's limits over real sockets (127.0.0.1, port 0): what
in-memory transports cannot show (a refused client reads its 413 instead of
a reset, a streamed upload paces the kernel's socket, a form parsed in the
thread pool). Everything waits on Deferreds; no sleeps.
"""

from __future__ import annotations

import threading
from typing import Any, List

from klein import Klein
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from twisted_aleph import http
from twisted_aleph.http import server_request
from twisted_aleph.http.body import STREAM_HIGH_WATER
from twisted_aleph.http.options import body_options


class RawClient(Protocol):
    """Sends ``data`` on connecting, keeps what comes back; ``done`` fires
    with it when the connection closes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.received = b""
        self.done: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(self.received)


def raw_request(port: int, data: bytes) -> Deferred:
    """Deferred[RawClient] connected to 127.0.0.1:port, having sent ``data``."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    return endpoint.connect(Factory.forProtocol(lambda: RawClient(data)))


class SocketLimitTests(unittest.TestCase):

    def serve(self, app: Klein, **options: Any) -> Any:
        server = http.start_server(app, 0, interface="127.0.0.1", **options)
        self.addCleanup(server.close)
        return server

    @inlineCallbacks
    def test_a_refused_upload_reads_its_413_not_a_reset(self) -> Any:
        app = Klein()

        @app.route("/", methods=["POST"])
        def root(request: Any) -> str:
            return "unreachable"
        server = self.serve(app, max_request_body=1024)
        head = (b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n"
                % (64 * 1024 * 1024))
        client = yield raw_request(server.port, head + b"x" * (4 * 1024 * 1024))
        received = yield client.done  # the server closed once the client stopped
        self.assertTrue(received.startswith(b"HTTP/1.1 413 "), received[:80])
        self.assertIn(b"larger than the 1024 bytes allowed", received)

    @inlineCallbacks
    def test_a_streamed_upload_paces_the_socket(self) -> Any:
        """20 MB through a route that takes one chunk per reactor turn: all of
        it arrives, and the server never holds more than the stated bound."""
        app = Klein()
        held: List[int] = []
        total = 20 * 1024 * 1024

        @app.route("/", methods=["POST"])
        @body_options(raw_stream=True, max_request_body=None)
        async def root(request: Any) -> dict:
            body = request.body_stream
            size = 0
            while True:
                held.append(request._body.held_bytes)
                data = await body.take()
                if data is None:
                    break
                size += len(data)
                await task.deferLater(reactor, 0, lambda: None)  # a slow route: one per turn
            return {"body": b"%d" % size}
        server = self.serve(app)
        head = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
        client = yield raw_request(server.port, head % total + b"u" * total)
        received = yield client.done
        self.assertTrue(received.endswith(b"\r\n\r\n%d" % total), received[-100:])
        # (a read of the socket is at most 64 KiB: twisted's bufferSize)
        self.assertLessEqual(max(held), 2 * (STREAM_HIGH_WATER + 65536))
        self.assertGreater(len(held), 20)

    @inlineCallbacks
    def test_a_big_form_is_parsed_in_the_thread_pool(self) -> Any:
        threads: List[bool] = []
        real = server_request.parse_form

        def recording(*args: Any) -> Any:
            threads.append(threading.current_thread() is threading.main_thread())
            return real(*args)
        self.patch(server_request, "parse_form", recording)
        app = Klein()

        @app.route("/", methods=["POST"])
        @body_options(form=True)
        def root(request: Any) -> dict:
            return {"body": "%d %d" % (len(request.params["big"]), len(request.params))}
        server = self.serve(app)
        pool = http.connection_pool()
        self.addCleanup(pool.close)
        body = b"a=1&big=" + b"b" * (2 * 1024 * 1024)
        resp = yield http.post(f"http://127.0.0.1:{server.port}/", pool=pool, body=body,
                               headers={"content-type": "application/x-www-form-urlencoded"})
        self.assertEqual(resp["body"].read(), b"%d 2" % (2 * 1024 * 1024))
        self.assertEqual(threads, [False])  # not on the reactor thread

    @inlineCallbacks
    def test_past_max_connections_503_and_the_others_served(self) -> Any:
        app = Klein()

        @app.route("/")
        def root(request: Any) -> str:
            return "served"
        server = self.serve(app, max_connections=1)
        first = yield raw_request(server.port, b"")
        second = yield raw_request(server.port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        refused = yield second.done
        self.assertTrue(refused.startswith(b"HTTP/1.1 503 "), refused[:60])
        self.assertIn(b"retry-after: 1", refused.lower())
        first.transport.write(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        answer = yield first.done
        self.assertTrue(answer.endswith(b"served") or b"served" in answer, answer[-60:])
