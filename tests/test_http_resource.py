"""Klein dispatch and error pages (``twisted_aleph.http.resource``) in memory.

Requests go through Twisted's real HTTP parser and client over in-memory
transports (``twisted_aleph.http.testing.stub_pool``), or straight into an
``HTTPChannel`` on a ``StringTransport`` where the test plays the socket.
"""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any, List

from klein import Klein
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.trial import unittest

from twisted_aleph import deferred, http, stream
from twisted_aleph.http.resource import handler_resource
from twisted_aleph.http.testing import stub_pool
from tests.test_http_server import RawConnection, body_of


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
