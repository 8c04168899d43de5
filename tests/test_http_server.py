"""The HTTP server in memory: response maps, bodies, errors, producers.

Requests go through Twisted's real HTTP parser and client over in-memory
transports (``twisted_aleph.http.testing.stub_pool``), or straight into an
``HTTPChannel`` on a ``StringTransport`` where the test plays the socket
(pausing it, hanging up). Time is a ``task.Clock``.
"""

from __future__ import annotations

import gc
import io
import sys
import warnings
import weakref
from typing import Any, Callable, List

from hypothesis import given, settings, strategies as st
from klein import Klein
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web.server import Site
from twisted.web.static import Data

from twisted_aleph import deferred, http, stream
from twisted_aleph.http.resource import handler_resource
from twisted_aleph.http.ring import decode_params
from twisted_aleph.http.testing import stub_pool


def body_of(resp: dict) -> bytes:
    return resp["body"].read()


class RawConnection:
    """One HTTP connection into a handler, the test standing in for the socket."""

    def __init__(self, handler: Any) -> None:
        self.site = Site(handler_resource(handler), reactor=task.Clock())
        self.channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.http = self.channel._channel  # the HTTPChannel inside Twisted's H1/H2 switch

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def get(self, path: str) -> None:
        self.send(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\n\r\n")

    def received(self) -> bytes:
        return self.transport.value()

    def hang_up(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


def get_body(make_body: Callable[[], Any]) -> RawConnection:
    """A connection that has asked GET / of a route answering ``{"body": make_body()}``."""
    app = Klein()

    @app.route("/")
    def root(request: Any) -> dict:
        return {"body": make_body()}
    conn = RawConnection(app)
    conn.get("/")
    return conn


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


class ErrorTests(unittest.TestCase):
    """Bad input gets a short, clear answer and nothing leaks to the client."""

    def setUp(self) -> None:
        self.app = Klein()
        self.pool = stub_pool(self.app)

    def fetch(self, path: str, method: str = "GET") -> dict:
        d = http.request(method, "http://test" + path, pool=self.pool)
        self.pool.flush()
        return self.successResultOf(d)

    def test_unknown_path_is_404_no_such_page(self) -> None:
        resp = self.fetch("/nowhere")
        self.assertEqual((resp["status"], body_of(resp)), (404, b"No such page."))

    def test_handler_exception_is_500_without_traceback(self) -> None:
        @self.app.route("/boom")
        def boom(request: Any) -> dict:
            raise ZeroDivisionError("secret internals")
        resp = self.fetch("/boom")
        body = body_of(resp)
        self.assertEqual(resp["status"], 500)
        self.assertEqual(body, b"Internal server error.")
        self.assertNotIn(b"Traceback", body)
        self.assertNotIn(b"secret", body)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_failed_deferred_is_500_logged(self) -> None:
        @self.app.route("/boom")
        def boom(request: Any) -> Deferred:
            d: Deferred = Deferred()
            d.errback(KeyError("k"))
            return d
        self.assertEqual(self.fetch("/boom")["status"], 500)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_bad_response_map_is_500(self) -> None:
        @self.app.route("/bad")
        def bad(request: Any) -> dict:
            return {"status": "two hundred", "body": "x"}

        @self.app.route("/badbody")
        def badbody(request: Any) -> dict:
            return {"body": 42}
        self.assertEqual(self.fetch("/bad")["status"], 500)
        self.assertEqual(self.fetch("/badbody")["status"], 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError, TypeError)), 2)

    def test_bad_request_is_400_one_line(self) -> None:
        @self.app.route("/br")
        def br(request: Any) -> dict:
            raise http.BadRequest("x must be small\nand this line is dropped")
        resp = self.fetch("/br")
        self.assertEqual((resp["status"], body_of(resp)), (400, b"x must be small"))

    def test_wrong_method_is_405_with_allow(self) -> None:
        @self.app.route("/only-get", methods=["GET"])
        def only_get(request: Any) -> dict:
            return {"body": "x"}
        resp = self.fetch("/only-get", method="DELETE")
        self.assertEqual(resp["status"], 405)
        self.assertIn("GET", resp["headers"]["allow"])

    def test_app_error_handlers_come_first_and_may_return_maps(self) -> None:
        @self.app.route("/boom")
        def boom(request: Any) -> dict:
            raise LookupError("nope")

        @self.app.handle_errors(LookupError)
        def lookup_failed(request: Any, failure: Failure) -> dict:
            return {"status": 418, "body": "teapot"}
        resp = self.fetch("/boom")
        self.assertEqual((resp["status"], body_of(resp)), (418, b"teapot"))

    def test_bad_stream_message_cuts_the_connection(self) -> None:
        @self.app.route("/")
        def root(request: Any) -> dict:
            return {"body": stream.stream_of([b"ok", 42])}
        conn = RawConnection(self.app)
        conn.get("/")
        self.assertIn(b"ok", conn.received())
        self.assertTrue(conn.transport.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class KleinRoutingTests(unittest.TestCase):
    """What Klein's own rendering does, RingResource does too (it renders
    itself, without KleinResource.render's self-referring closures)."""

    def setUp(self) -> None:
        self.app = Klein()

    def fetch(self, path: str) -> dict:
        pool = stub_pool(self.app)
        d = http.request("GET", "http://test" + path, pool=pool)
        pool.flush()
        return self.successResultOf(d)

    def test_branch_routes_prepath_postpath_and_url_for(self) -> None:
        from klein.interfaces import IKleinRequest

        @self.app.route("/files/", branch=True)
        def files(request: Any) -> dict:
            return {"body": b"|".join([b"/".join(request.prepath), b"/".join(request.postpath)])}

        @self.app.route("/user/<int:uid>", endpoint="user")
        def user(request: Any, uid: int) -> dict:
            return {"body": IKleinRequest(request).url_for("user", {"uid": uid + 1})}
        self.assertEqual(body_of(self.fetch("/files/a/b.txt")), b"files|a/b.txt")
        self.assertEqual(body_of(self.fetch("/user/41")), b"/user/42")

    def test_template_element_renders(self) -> None:
        from twisted.web.template import Element, TagLoader, tags

        @self.app.route("/page")
        def page(request: Any) -> Any:
            return Element(loader=TagLoader(tags.p("templated")))
        self.assertIn(b"<p>templated</p>", body_of(self.fetch("/page")))

    def test_failing_error_handler_falls_through_to_the_next(self) -> None:
        @self.app.route("/boom")
        def boom(request: Any) -> dict:
            raise LookupError("nope")

        @self.app.handle_errors(LookupError)
        def broken_handler(request: Any, failure: Failure) -> dict:
            raise RuntimeError("the handler broke")
        resp = self.fetch("/boom")
        self.assertEqual((resp["status"], body_of(resp)), (500, b"Internal server error."))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_url_not_utf8_is_400(self) -> None:
        conn = RawConnection(self.app)
        conn.get("/caf%FF")  # decoded by twisted.web to bytes that are not UTF-8
        self.assertIn(b" 400 ", conn.received().split(b"\r\n")[0])
        self.assertIn(b"Non-UTF-8 encoding in URL.", conn.received())
        self.assertIn(b"content-type: text/plain; charset=utf-8", conn.received().lower())

    def test_hang_up_cancels_a_pending_route(self) -> None:
        cancelled: List[Deferred] = []

        @self.app.route("/wait")
        def wait(request: Any) -> Deferred:
            return Deferred(cancelled.append)
        conn = RawConnection(self.app)
        conn.get("/wait")
        self.assertEqual(cancelled, [])
        conn.hang_up()
        self.assertEqual(len(cancelled), 1)
        self.assertEqual(self.flushLoggedErrors(), [])  # a cancellation is not an error

    def test_a_finished_request_is_freed_without_the_cyclic_collector(self) -> None:
        """Reference counting alone frees a request once answered (CPython):
        with thousands in flight, the collector would otherwise walk them all."""
        if not hasattr(sys, "getrefcount"):
            raise unittest.SkipTest("PyPy frees nothing by reference counting")
        clock = task.Clock()
        requests: List[Any] = []

        @self.app.route("/now")
        def now(request: Any) -> dict:
            requests.append(weakref.ref(request))
            return {"body": "now"}

        @self.app.route("/later")
        def later(request: Any) -> Deferred:
            requests.append(weakref.ref(request))
            return deferred.timeout(Deferred(), 1.0, value={"body": "later"}, clock=clock)
        gc.disable()
        self.addCleanup(gc.enable)
        conn = RawConnection(self.app)
        conn.get("/now")
        conn.get("/later")
        clock.advance(1)
        self.assertEqual(conn.received().count(b"HTTP/1.1 200"), 2)
        self.assertEqual([r() for r in requests], [None, None])


class CallableHandlerTests(unittest.TestCase):
    """A plain ``handler(request)`` is served like a catch-all route."""

    def fetch(self, handler: Any, path: str) -> dict:
        pool = stub_pool(handler)
        d = http.get("http://test" + path, pool=pool)
        pool.flush()
        return self.successResultOf(d)

    def test_callable_any_path(self) -> None:
        def handler(request: Any) -> dict:
            return {"body": request.path + b" " + request.params.get("x", "").encode()}
        self.assertEqual(body_of(self.fetch(handler, "/a/b?x=1")), b"/a/b 1")

    def test_none_is_404(self) -> None:
        resp = self.fetch(lambda request: None, "/")
        self.assertEqual((resp["status"], body_of(resp)), (404, b"No such page."))

    def test_async_callable(self) -> None:
        async def handler(request: Any) -> dict:
            return {"body": "async"}
        self.assertEqual(body_of(self.fetch(handler, "/")), b"async")

    def test_not_a_handler(self) -> None:
        self.assertRaises(TypeError, handler_resource, 42)


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


class MovedNamesTests(unittest.TestCase):
    """Names that moved from http.server to http.ring and http.resource still
    import from http.server for one release, with a DeprecationWarning."""

    MOVED = {
        "BadRequest": "ring", "decode_params": "ring", "respond": "ring",
        "adapt_result": "ring", "RingResource": "resource", "handler_resource": "resource",
        "NOT_FOUND_BODY": "resource",
    }

    def test_old_names_warn_and_are_the_new_objects(self) -> None:
        from twisted_aleph.http import resource, ring, server
        homes = {"ring": ring, "resource": resource}
        for name, home in self.MOVED.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = getattr(server, name)
            self.assertIs(value, getattr(homes[home], name), name)
            self.assertEqual([w.category for w in caught], [DeprecationWarning], name)
            self.assertIn(f"twisted_aleph.http.{home}", str(caught[0].message))
            self.assertEqual(caught[0].filename, __file__)  # points at the caller

    def test_from_import_warns(self) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from twisted_aleph.http.server import BadRequest
        self.assertIs(BadRequest, http.BadRequest)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])
        self.assertEqual(caught[0].filename, __file__)

    def test_other_names_are_still_missing(self) -> None:
        from twisted_aleph.http import server
        with self.assertRaises(AttributeError):
            server.no_such_name  # noqa: B018
        self.assertNotIn("respond", server.__all__)

    def test_the_facade_exports_what_it_did_without_warning(self) -> None:
        names = ["start_server", "BadRequest", "RingResource", "HTTPServerService",
                 "handler_resource", "load_handler"]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values = [getattr(http, name) for name in names]
        self.assertEqual(caught, [])
        self.assertTrue(all(callable(v) for v in values))
        self.assertLessEqual(set(names), set(http.__all__))
