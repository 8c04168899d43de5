"""Ring's side of the HTTP server (``twisted_aleph.http.ring``) in memory:
response maps, sized and streamed bodies, parameters, producers.

Requests go through Twisted's real HTTP parser and client over in-memory
transports (``twisted_aleph.http.testing.stub_pool``), or straight into an
``HTTPChannel`` on a ``StringTransport`` where the test plays the socket
(pausing it, hanging up). Time is a ``task.Clock``.
"""

from __future__ import annotations

import io
from typing import Any, List

from hypothesis import given, settings, strategies as st
from klein import Klein
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.trial import unittest
from twisted.web.static import Data

from twisted_aleph import deferred, http, stream
from twisted_aleph.http.ring import decode_params
from twisted_aleph.http.testing import stub_pool
from tests.test_http_server import RawConnection, body_of, get_body


class ResponseMapTests(unittest.TestCase):
    """Routes answering response maps, Deferreds and coroutines of them."""

    def setUp(self) -> None:
        self.app = Klein()

    def fetch(self, path: str, method: str = "GET", **kwargs: Any) -> dict:
        pool = stub_pool(self.app)
        d = http.request(method, "http://test" + path, pool=pool, **kwargs)
        pool.flush()
        return self.successResultOf(d)

    def test_map_with_str_body(self) -> None:
        @self.app.route("/")
        def root(request: Any) -> dict:
            return {"status": 201, "headers": {"x-thing": "yes"}, "body": "héllo"}
        resp = self.fetch("/")
        self.assertEqual(resp["status"], 201)
        self.assertEqual(resp["headers"]["x-thing"], "yes")
        self.assertEqual(resp["headers"]["content-length"], str(len("héllo".encode())))
        self.assertEqual(body_of(resp), "héllo".encode())

    def test_bytes_list_and_bytesio_bodies_are_sized(self) -> None:
        bodies = {"/b": b"abc", "/l": ["a", b"b", "c"], "/f": io.BytesIO(b"abc"),
                  "/none": None}

        @self.app.route("/<name>")
        def root(request: Any, name: str) -> dict:
            return {"status": 200, "body": bodies["/" + name]}
        for path in ("/b", "/l", "/f"):
            resp = self.fetch(path)
            self.assertEqual(body_of(resp), b"abc", path)
            self.assertEqual(resp["headers"]["content-length"], "3", path)
        self.assertEqual(body_of(self.fetch("/none")), b"")

    def test_header_lists_and_int_values(self) -> None:
        @self.app.route("/")
        def root(request: Any) -> dict:
            return {"headers": {"x-many": ["a", "b"], "x-n": 7}, "body": b""}
        resp = self.fetch("/")
        self.assertEqual(resp["status"], 200)
        self.assertEqual(resp["headers"]["x-many"], "a, b")
        self.assertEqual(resp["headers"]["x-n"], "7")

    def test_deferred_and_coroutine_of_a_map(self) -> None:
        @self.app.route("/d")
        def deferred_map(request: Any) -> Deferred:
            return succeed({"status": 202, "body": "d"})

        @self.app.route("/c")
        async def coroutine_map(request: Any) -> dict:
            return {"status": 203, "body": "c"}
        self.assertEqual(self.fetch("/d")["status"], 202)
        resp = self.fetch("/c")
        self.assertEqual((resp["status"], body_of(resp)), (203, b"c"))

    def test_klein_return_types_still_work(self) -> None:
        @self.app.route("/bytes")
        def raw(request: Any) -> bytes:
            return b"raw bytes"

        @self.app.route("/str")
        def text(request: Any) -> str:
            return "text"
        @self.app.route("/resource")
        def resource(request: Any) -> Any:
            return Data(b"from a resource", "text/plain")
        self.assertEqual(body_of(self.fetch("/bytes")), b"raw bytes")
        self.assertEqual(body_of(self.fetch("/str")), b"text")
        self.assertEqual(body_of(self.fetch("/resource")), b"from a resource")

    def test_streamed_bodies(self) -> None:
        async def agen() -> Any:
            for x in ("a", "b", "c"):
                yield x

        bodies = {
            "stream": lambda: stream.stream_of([b"a", "b", b"c"]),
            "deferred": lambda: succeed(b"abc"),
            "async": agen,
        }

        @self.app.route("/<kind>")
        def root(request: Any, kind: str) -> dict:
            return {"body": bodies[kind]()}
        for kind in bodies:
            resp = self.fetch("/" + kind)
            self.assertEqual(body_of(resp), b"abc", kind)
            self.assertNotIn("content-length", resp["headers"], kind)

    def test_head_of_streamed_body_sends_nothing_and_closes_source(self) -> None:
        source = stream.Stream()

        @self.app.route("/", methods=["HEAD"])
        def root(request: Any) -> dict:
            return {"body": source}
        resp = self.fetch("/", method="HEAD")
        self.assertEqual((resp["status"], body_of(resp)), (200, b""))
        self.assertTrue(source.is_closed)

    def test_params_query_and_form(self) -> None:
        seen: List[Any] = []

        @self.app.route("/", methods=["POST"])
        def root(request: Any) -> dict:
            seen.append((request.params, request.param_lists))
            return {"body": "ok"}
        self.fetch("/?a=1&a=2&q=%C3%A9", method="POST", body={"f": "v"})
        params, lists = seen[0]
        self.assertEqual(params, {"a": "1", "q": "é", "f": "v"})
        self.assertEqual(lists["a"], ["1", "2"])

    def test_params_not_utf8_is_400(self) -> None:
        @self.app.route("/")
        def root(request: Any) -> dict:
            return {"body": "unreachable"}
        resp = self.fetch("/?a=%FF")
        self.assertEqual((resp["status"], body_of(resp)), (400, b"Parameters must be UTF-8."))


class ProducerTests(unittest.TestCase):
    """Streamed bodies: backpressure from a slow reader, and hang-ups."""

    def test_slow_reader_pauses_the_source(self) -> None:
        source = stream.Stream()
        conn = get_body(lambda: source)
        self.assertIs(source.offer(b"first"), True)
        self.assertIn(b"first", conn.received())
        # The socket's send buffer is full: Twisted pauses the channel.
        conn.http.pauseProducing()
        source.offer(b"second")  # written, and the source now waits
        self.assertIn(b"second", conn.received())
        blocked = source.offer(b"third")
        self.assertIsInstance(blocked, Deferred)
        self.assertFalse(blocked.called)
        self.assertNotIn(b"third", conn.received())
        conn.http.resumeProducing()
        self.assertTrue(blocked.called)
        self.assertIn(b"third", conn.received())
        source.close()
        self.assertTrue(conn.received().endswith(b"0\r\n\r\n"))

    def test_hang_up_closes_source_and_stops_periodically(self) -> None:
        clock = task.Clock()
        conn = get_body(lambda: stream.transform(
            stream.take(100), stream.periodically(0.1, lambda: "tick\n", clock=clock)))
        clock.advance(0.1)
        clock.advance(0.1)
        self.assertEqual(conn.received().count(b"tick"), 2)
        self.assertTrue(clock.getDelayedCalls())
        conn.hang_up()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_upgraded_request_gets_no_response(self) -> None:
        app = Klein()
        done: Deferred = Deferred()

        @app.route("/ws")
        def ws(request: Any) -> Deferred:
            request.aleph_upgraded = True  # what websocket_connection does
            return done
        conn = RawConnection(app)
        conn.get("/ws")
        done.callback(None)
        self.assertEqual(conn.received(), b"")
        self.assertFalse(conn.http.requests[0].finished)
        conn.hang_up()


class ParamsPropertyTests(unittest.TestCase):
    """decode_params: whatever arrives decodes, or is a clean BadRequest."""

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.binary(max_size=8), st.lists(st.binary(max_size=8), max_size=3)))
    def test_decode_params_total(self, args: dict) -> None:
        class Req:
            pass
        req = Req()
        req.args = args  # type: ignore[attr-defined]
        try:
            params, lists = decode_params(req)
        except http.BadRequest as e:
            self.assertEqual(str(e), "Parameters must be UTF-8.")
            return
        self.assertEqual(set(lists), {k.decode() for k in args})
        for k, vs in args.items():
            self.assertEqual(lists[k.decode()], [v.decode() for v in vs])
            if vs:
                self.assertEqual(params[k.decode()], vs[0].decode())


class FailingBodyTests(unittest.TestCase):
    """A streamed body that fails partway cuts the connection: no last chunk."""

    serve = staticmethod(get_body)  # a route answering {"body": make_body()}

    async def settle(self, conn: RawConnection) -> None:
        """Wait for the response to end, either way: the connection cut, or
        the last chunk written (watched on the transport's calls, no polling)."""
        transport = conn.transport
        ended: Deferred = Deferred()

        def check() -> None:
            done = transport.disconnecting or conn.received().endswith(b"0\r\n\r\n")
            if done and not ended.called:
                ended.callback(None)

        def watch(name: str) -> None:
            original = getattr(transport, name)

            def watched(*args: Any) -> None:
                original(*args)
                check()
            setattr(transport, name, watched)

        for name in ("write", "writeSequence", "loseConnection"):
            watch(name)
        check()
        await deferred.timeout(ended, 10)

    def assert_cut(self, conn: RawConnection, error: type) -> None:
        received = conn.received()
        self.assertTrue(received.startswith(b"HTTP/1.1 200 "), received)
        self.assertFalse(received.endswith(b"0\r\n\r\n"), received)
        self.assertTrue(conn.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(error)), 1)

    def test_failed_deferred_body_cuts_the_connection(self) -> None:
        body: Deferred = Deferred()
        conn = self.serve(lambda: body)
        body.errback(ValueError("boom"))
        self.assert_cut(conn, ValueError)

    def test_failing_async_generator_cuts_the_connection(self) -> None:
        async def agen() -> Any:
            yield b"part1,"
            raise RuntimeError("db went away")
        conn = self.serve(agen)
        self.assertIn(b"part1,", conn.received())
        self.assert_cut(conn, RuntimeError)

    async def test_failing_generator_cuts_the_connection(self) -> None:
        def gen() -> Any:
            yield b"part1,"
            raise RuntimeError("db went away")
        conn = self.serve(gen)  # pulled in the thread pool
        await self.settle(conn)
        self.assertIn(b"part1,", conn.received())
        self.assert_cut(conn, RuntimeError)

    async def test_generator_that_ends_still_finishes(self) -> None:
        conn = self.serve(lambda: iter([b"a", b"b"]))
        await self.settle(conn)
        self.assertTrue(conn.received().endswith(b"0\r\n\r\n"))
        self.assertFalse(conn.transport.disconnecting)


class InvalidMapBodyTests(unittest.TestCase):
    """An invalid response map is a 500 and its streamed body is closed."""

    def fetch(self, response: dict) -> dict:
        app = Klein()

        @app.route("/")
        def root(request: Any) -> dict:
            return response
        pool = stub_pool(app)
        d = http.get("http://test/", pool=pool)
        pool.flush()
        return self.successResultOf(d)

    def test_stream_body_is_closed(self) -> None:
        for bad in ({"status": "200"}, {"headers": {"x-a": object()}}):
            s = stream.Stream()
            resp = self.fetch(dict(bad, body=s))
            self.assertEqual(resp["status"], 500)
            self.assertTrue(s.is_closed, bad)
        self.assertEqual(len(self.flushLoggedErrors()), 2)

    def test_file_body_is_closed(self) -> None:
        for bad in ({"status": "200"}, {"headers": {"x-a": object()}}):
            f = open(self.mktemp(), "wb+")
            self.addCleanup(f.close)
            f.write(b"x" * 10)
            f.seek(0)
            resp = self.fetch(dict(bad, body=f))
            self.assertEqual(resp["status"], 500)
            self.assertTrue(f.closed, bad)
        self.assertEqual(len(self.flushLoggedErrors()), 2)


class HangUpPendingPutTests(unittest.TestCase):
    """A client hanging up completes a feeder's pending puts (dropped)."""

    def test_pending_puts_complete_after_hang_up(self) -> None:
        source = stream.Stream()
        conn = get_body(lambda: source)
        conn.http.pauseProducing()  # the socket's send buffer is full
        puts = [source.put(b"held-%d" % i) for i in range(4)]
        self.assertIn(b"held-0", conn.received())
        pending = [d for d in puts if not d.called]
        self.assertEqual(len(pending), 3)
        conn.hang_up()
        self.assertEqual([self.successResultOf(d) for d in puts], [True] * 4)
        self.assertNotIn(b"held-3", conn.received())
        self.assertTrue(source.is_closed)
        self.assertIs(self.successResultOf(source.put(b"late")), False)
