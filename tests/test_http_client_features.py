"""Client features: cookies, redirects, request bodies (json, edn, files, auth),
``as_`` decoding, and every bad input of the kind a server or a caller can
give, each followed by a request on the same pool to show it still works.

In memory (``http.testing.stub_pool``) where the server can be a resource;
multipart uploads over a real socket on 127.0.0.1 (treq streams them with
Twisted's cooperator, which needs the running reactor).
"""

from __future__ import annotations

import base64
import email.parser
import io
import json
import os
import tempfile
import warnings
from typing import Any, Dict, List

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web import resource
from twisted.web.http_headers import Headers

from twisted_aleph import edn, http
from twisted_aleph.peerlog import PeerLog
from twisted_aleph.http.client import ConnectionPool
from twisted_aleph.http.testing import stub_pool


class Site(resource.Resource):
    """The routes the tests need, as a plain twisted.web resource."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hits: List[str] = []

    def render(self, request: Any) -> bytes:
        path = request.path.decode()
        self.hits.append(path)
        method = request.method.decode()
        headers: Headers = request.requestHeaders
        if path == "/echo":
            out = {
                "method": method,
                "content_type": headers.getRawHeaders(b"content-type", [b""])[0].decode(),
                "cookie": headers.getRawHeaders(b"cookie", [b""])[0].decode(),
                "authorization": headers.getRawHeaders(b"authorization", [b""])[0].decode(),
                "body": request.content.read().decode("latin-1"),
            }
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(out).encode()
        if path == "/set":
            for value in request.args.get(b"c", []):
                request.responseHeaders.addRawHeader(b"set-cookie", value)
            return b"set"
        if path == "/bad-cookies":
            for value in (b"good=1", b"\xff\xfe=\x00", b"=novalue", b"x=1; domain=evil.example",
                          b"also=2"):
                request.responseHeaders.addRawHeader(b"set-cookie", value)
            return b"ok"
        if path == "/login":
            request.setResponseCode(303)
            request.setHeader(b"location", b"/echo")
            request.addCookie(b"session", b"s3cr3t", path=b"/")
            return b""
        if path.startswith("/chain/"):
            n = int(path.rsplit("/", 1)[1])
            request.setResponseCode(302)
            request.setHeader(b"location", b"/echo" if n == 0 else f"/chain/{n - 1}".encode())
            return b"moved"
        if path == "/to-other":
            request.setResponseCode(302)
            request.setHeader(b"location", b"http://other.test/rel-start")
            return b""
        if path == "/rel-start":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/echo?host=" + request.getRequestHostname())
            return b""
        if path == "/loop":
            request.setResponseCode(302)
            request.setHeader(b"location", b"/loop")
            return b"again"
        if path == "/moved-post":
            request.setResponseCode(int(request.args.get(b"code", [b"302"])[0]))
            request.setHeader(b"location", b"/echo")
            return b"see /echo"
        if path == "/nowhere":
            request.setResponseCode(302)
            return b"no location"
        if path == "/json":
            request.setHeader(b"content-type", b"application/json")
            return b'{"a": [1, 2], "b": null}'
        if path == "/edn":
            request.setHeader(b"content-type", b"application/edn")
            return b'{:a [1 2] :b #{"x"}}'
        if path == "/latin1":
            request.setHeader(b"content-type", b"text/plain; charset=iso-8859-1")
            return "caf\u00e9".encode("latin-1")
        if path == "/garbage":
            request.setHeader(b"content-type", b"application/json")
            return b"{not json"
        if path == "/empty":
            request.setResponseCode(204)
            return b""
        if path == "/error":
            request.setResponseCode(500)
            return b"<html>oops</html>"
        request.setResponseCode(404)
        return b"no such page"


def flush_get(pool: Any, url: str, **kwargs: Any) -> Any:
    d = http.request(kwargs.pop("method", "GET"), url, pool=pool, **kwargs)
    pool.flush()
    return d


class CookieTests(unittest.TestCase):

    def setUp(self) -> None:
        self.site = Site()
        self.pool = stub_pool(self.site)

    def call(self, path: str, **kwargs: Any) -> Dict[str, Any]:
        d = flush_get(self.pool, "http://app.test" + path, **kwargs)
        return self.successResultOf(d)

    def echoed(self, **kwargs: Any) -> Dict[str, Any]:
        return json.loads(self.call("/echo", **kwargs)["body"].read())

    def test_jar_per_pool_readable_and_clearable(self) -> None:
        self.call("/set?c=a%3D1&c=b%3D2%3B%20Path%3D%2F")
        self.assertEqual({c.name: c.value for c in self.pool.cookies}, {"a": "1", "b": "2"})
        self.assertEqual(self.pool.cookies["a"], "1")
        self.assertEqual(sorted(self.echoed()["cookie"].split("; ")), ["a=1", "b=2"])
        other = stub_pool(self.site)
        d = flush_get(other, "http://app.test/echo")
        self.assertEqual(json.loads(self.successResultOf(d)["body"].read())["cookie"], "")
        self.pool.cookies.clear()
        self.assertEqual(list(self.pool.cookies), [])
        self.assertEqual(self.echoed()["cookie"], "")

    def test_request_cookies_are_sent_not_kept(self) -> None:
        self.call("/set?c=kept%3D1")
        cookie = self.echoed(cookies={"extra": "2"})["cookie"]
        self.assertEqual(sorted(cookie.split("; ")), ["extra=2", "kept=1"])
        self.assertEqual([c.name for c in self.pool.cookies], ["kept"])
        self.assertEqual(self.echoed()["cookie"], "kept=1")
        self.assertRaises(TypeError, http.get, "http://app.test/echo", pool=self.pool,
                          cookies={"n": 1})

    def test_cookie_set_by_a_redirect_is_sent_on_the_next_hop(self) -> None:
        resp = self.call("/login", method="POST", body=b"user=me")
        self.assertEqual(resp["status"], 200)
        self.assertEqual(resp["url"], "http://app.test/echo")
        echoed = json.loads(resp["body"].read())
        self.assertEqual((echoed["method"], echoed["cookie"]), ("GET", "session=s3cr3t"))
        self.assertEqual(self.pool.cookies["session"], "s3cr3t")

    def test_invalid_set_cookie_headers_are_ignored_and_logged(self) -> None:
        seen: List[Dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        clock = Clock()
        self.pool.cookies.peer_log = PeerLog("http-client", clock=clock)
        resp = self.call("/bad-cookies")
        self.assertEqual((resp["status"], resp["body"].read()), (200, b"ok"))
        self.assertEqual(sorted(c.name for c in self.pool.cookies), ["also", "good"])
        lines = [e for e in seen if e.get("kind") == "bad Set-Cookie"]
        self.assertEqual(len(lines), 1)
        self.assertEqual(lines[0]["peer"], "http://app.test:80")
        self.assertIn("\\xff\\xfe=\\x00", lines[0]["shown"])
        self.assertNotIn("log_failure", lines[0])  # a line, no traceback
        self.assertEqual(self.pool.cookies.peer_log.counts, {"bad Set-Cookie": 1})
        self.call("/bad-cookies")  # the same server again at once: counted, not logged
        self.assertEqual(len([e for e in seen if e.get("kind") == "bad Set-Cookie"]), 1)
        self.assertEqual(self.pool.cookies.peer_log.counts, {"bad Set-Cookie": 2})
        # the pool still works, and sends what it kept
        self.assertEqual(sorted(self.echoed()["cookie"].split("; ")), ["also=2", "good=1"])


class RedirectTests(unittest.TestCase):

    def setUp(self) -> None:
        self.site = Site()
        self.pool = stub_pool(self.site)

    def call(self, path: str, **kwargs: Any) -> Any:
        return flush_get(self.pool, "http://app.test" + path, **kwargs)

    def test_follows_and_reports_the_final_url(self) -> None:
        resp = self.successResultOf(self.call("/chain/3"))
        self.assertEqual(resp["status"], 200)
        self.assertEqual(resp["url"], "http://app.test/echo")
        self.assertEqual(resp["trace_redirects"], [
            "http://app.test/chain/2", "http://app.test/chain/1", "http://app.test/chain/0",
            "http://app.test/echo"])
        plain = self.successResultOf(self.call("/echo"))
        self.assertEqual((plain["url"], plain["trace_redirects"]), ("http://app.test/echo", []))

    def test_other_origin_gets_no_credentials_and_relative_hops_resolve_there(self) -> None:
        self.pool.cookies.set_cookie(_cookie("app.test", "mine", "1"))
        resp = self.successResultOf(self.call("/to-other", auth=("ann", "secret")))
        self.assertEqual(resp["url"], "http://other.test/echo?host=other.test")
        echoed = json.loads(resp["body"].read())
        self.assertEqual((echoed["authorization"], echoed["cookie"]), ("", ""))
        same = json.loads(self.successResultOf(self.call("/chain/0", auth=("ann", "s")))
                          ["body"].read())
        self.assertTrue(same["authorization"].startswith("Basic "))  # same origin: kept
        self.assertEqual(same["cookie"], "mine=1")

    def test_max_redirects(self) -> None:
        self.successResultOf(self.call("/chain/9"))  # 10 redirects: the default allows them
        failure = self.failureResultOf(self.call("/chain/3", max_redirects=2),
                                       http.TooManyRedirects)
        self.assertEqual(failure.value.url, "http://app.test/chain/1")
        self.assertIn("gave up after 2 redirects", str(failure.value))
        resp = self.successResultOf(self.call("/chain/0", follow_redirects=False))
        self.assertEqual((resp["status"], resp["headers"]["location"]), (302, "/echo"))
        self.assertRaises(ValueError, http.get, "http://app.test/", pool=self.pool,
                          max_redirects=-1)

    def test_redirect_loop_is_a_clear_error_then_pool_usable(self) -> None:
        failure = self.failureResultOf(self.call("/loop"), http.TooManyRedirects)
        self.assertEqual(self.site.hits.count("/loop"), 11)  # the first request and 10 redirects
        self.assertEqual(len(failure.value.trace), 10)
        self.assertEqual(failure.value.max_redirects, 10)
        self.assertIn("http://app.test/loop redirects again", str(failure.value))
        self.assertEqual(self.successResultOf(self.call("/echo"))["status"], 200)

    def test_post_redirect_returned_unless_forced(self) -> None:
        for code in (301, 302, 307, 308):
            resp = self.successResultOf(self.call(f"/moved-post?code={code}", method="POST",
                                                  body=b"x"))
            self.assertEqual((resp["status"], resp["body"].read()), (code, b"see /echo"))
            self.assertEqual(resp["url"], f"http://app.test/moved-post?code={code}")
        for code in (301, 302, 303):
            resp = self.successResultOf(self.call(f"/moved-post?code={code}", method="POST",
                                                  body=b"x", force_redirects=True))
            self.assertEqual((resp["status"], json.loads(resp["body"].read())["method"]),
                             (200, "GET"))
        # 303 See Other is followed for a POST in any case (as GET)
        resp = self.successResultOf(self.call("/moved-post?code=303", method="POST", body=b"x"))
        self.assertEqual(resp["status"], 200)
        # a GET is followed on each
        for code in (301, 302, 307, 308):
            resp = self.successResultOf(self.call(f"/moved-post?code={code}"))
            self.assertEqual(resp["status"], 200)

    def test_redirect_without_location_is_the_response(self) -> None:
        resp = self.successResultOf(self.call("/nowhere"))
        self.assertEqual((resp["status"], resp["body"].read()), (302, b"no location"))


class BodyTests(unittest.TestCase):

    def setUp(self) -> None:
        self.pool = stub_pool(Site())

    def echo(self, **kwargs: Any) -> Dict[str, Any]:
        d = flush_get(self.pool, "http://app.test/echo", method="POST", **kwargs)
        return self.successResultOf(d)["body"]

    def test_json_edn_auth(self) -> None:
        out = json.loads(self.echo(json={"a": [1, None]}).read())
        self.assertEqual(out["content_type"], "application/json; charset=UTF-8")
        self.assertEqual(json.loads(out["body"]), {"a": [1, None]})
        out = json.loads(self.echo(edn={"a": [1, 2]}).read())
        self.assertEqual(out["content_type"], "application/edn")
        self.assertEqual(out["body"], '{"a" [1 2]}')
        out = json.loads(self.echo(auth=("ann", "pa:ss"), body=b"b").read())
        self.assertEqual(out["authorization"],
                         "Basic " + base64.b64encode(b"ann:pa:ss").decode())
        out = json.loads(self.echo(json=None).read())
        self.assertEqual(out["body"], "null")

    def test_one_body_only(self) -> None:
        for kwargs in ({"json": 1, "body": b"x"}, {"json": 1, "edn": 2}, {"edn": 1, "files": {}}):
            self.assertRaises(TypeError, http.post, "http://app.test/echo", pool=self.pool,
                              **kwargs)

    def test_as_decodes_unexceptional_bodies(self) -> None:
        def get(path: str, as_: str) -> Any:
            return self.successResultOf(flush_get(self.pool, "http://app.test" + path, as_=as_))
        self.assertEqual(get("/json", "json")["body"], {"a": [1, 2], "b": None})
        self.assertEqual(get("/edn", "edn")["body"],
                         {edn.Keyword("a"): (1, 2), edn.Keyword("b"): frozenset({"x"})})
        self.assertEqual(get("/latin1", "text")["body"], "caf\u00e9")
        self.assertEqual(get("/json", "bytes")["body"], b'{"a": [1, 2], "b": null}')
        self.assertIsNone(get("/empty", "json")["body"])
        error = get("/error", "json")  # an error status keeps the file, as Aleph
        self.assertEqual((error["status"], error["body"].read()), (500, b"<html>oops</html>"))
        self.assertRaises(ValueError, http.get, "http://app.test/json", pool=self.pool,
                          as_="xml")

    def test_body_that_does_not_parse_then_pool_usable(self) -> None:
        d = flush_get(self.pool, "http://app.test/garbage", as_="json")
        failure = self.failureResultOf(d, http.BadResponseBody)
        self.assertIn("response body from http://app.test is not valid JSON", str(failure.value))
        self.assertEqual(failure.value.response["body"], b"{not json")
        self.assertEqual(failure.value.response["status"], 200)
        self.assertIsInstance(failure.value.__cause__, ValueError)
        d = flush_get(self.pool, "http://app.test/garbage", as_="edn")
        self.assertIn("not valid EDN", str(self.failureResultOf(d, http.BadResponseBody).value))
        d = flush_get(self.pool, "http://app.test/json", as_="json")
        self.assertEqual(self.successResultOf(d)["body"]["a"], [1, 2])


class DeprecatedPoolTests(unittest.TestCase):

    def test_http_client_argument_still_works(self) -> None:
        stub = stub_pool(Site())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pool = ConnectionPool(stub.http_client)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])
        self.assertEqual(caught[0].filename, __file__)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.assertIs(ConnectionPool(http_client=stub.http_client).agent, stub.agent)
        self.assertEqual([w.category for w in caught], [DeprecationWarning])
        self.assertIs(pool.agent, stub.agent)
        pool.flush = stub.flush  # type: ignore[attr-defined]
        d = flush_get(pool, "http://app.test/json", as_="json")
        self.assertEqual(self.successResultOf(d)["body"]["b"], None)


class Uploads(resource.Resource):
    """Parses a multipart/form-data upload and answers what it got."""

    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        content_type = request.requestHeaders.getRawHeaders(b"content-type")[0]
        raw = request.content.read()
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + content_type + b"\r\n\r\n" + raw)
        parts = {}
        for part in message.get_payload():
            name = part.get_param("name", header="content-disposition")
            parts[name] = {"filename": part.get_filename(),
                           "content_type": part.get_content_type(),
                           "size": len(part.get_payload(decode=True)),
                           "head": part.get_payload(decode=True)[:20].decode("latin-1")}
        declared = request.requestHeaders.getRawHeaders(b"content-length", [b""])[0].decode()
        return json.dumps({"parts": parts, "content_length": declared}).encode()


class _CountingFile(io.BytesIO):
    """A file that remembers how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: List[int] = []

    def read(self, size: Any = -1) -> bytes:
        self.asked.append(size if size is not None else -1)
        return super().read(size)


class UploadTests(unittest.TestCase):

    def setUp(self) -> None:
        srv = http.start_server(Uploads(), 0, interface="127.0.0.1")
        self.addCleanup(srv.close)
        self.url = f"http://127.0.0.1:{srv.port}/upload"
        self.pool = http.connection_pool(max_per_host=1)
        self.addCleanup(self.pool.close)
        self.dir = tempfile.mkdtemp()
        self.addCleanup(_remove_tree, self.dir)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    @defer.inlineCallbacks
    def test_files_streamed_from_paths_and_files(self) -> Any:
        # ASCII: PyPy's email package (which twisted.web's server parses multipart
        # uploads with) takes quadratic time to decode binary parts
        big = b"".join(b"%07d\n" % i for i in range(37500))
        path = self.write("photo.png", big)
        counting = _CountingFile(b"counted " * 30000)
        resp = yield http.post(self.url, pool=self.pool, as_="json", body={"field": "v"}, files={
            "photo": path,
            "named": ("notes.txt", counting),
            "typed": ("data.bin", "application/x-thing", b"raw bytes"),
        })
        parts = resp["body"]["parts"]
        self.assertEqual(parts["photo"], {"filename": "photo.png", "content_type": "image/png",
                                          "size": 300000, "head": big[:20].decode("latin-1")})
        self.assertEqual((parts["named"]["filename"], parts["named"]["size"]),
                         ("notes.txt", 240000))
        self.assertEqual(parts["named"]["content_type"], "text/plain")
        self.assertEqual(parts["typed"]["content_type"], "application/x-thing")
        self.assertEqual(parts["field"]["head"], "v")
        self.assertNotEqual(resp["body"]["content_length"], "")  # sized, not chunked
        # streamed: read in pieces, never all at once
        self.assertTrue(counting.asked)
        self.assertTrue(all(0 < n <= 65536 for n in counting.asked if n != 0), counting.asked)
        self.assertTrue(counting.closed)

    @defer.inlineCallbacks
    def test_malformed_file_paths_are_clear_errors_then_pool_usable(self) -> Any:
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo)
        cases = [
            ({"f": os.path.join(self.dir, "missing.txt")}, "cannot read"),
            ({"f": self.dir}, "is not a regular file"),
            ({"f": fifo}, "is not a regular file"),
            ({"f": "bad\x00path"}, "cannot read"),
            ({"f": 42}, "expected a path, bytes or a binary file, not int"),
            ({"f": ("a", "b", "c", "d")}, "a tuple must be"),
            ({3: b"x"}, "field names must be str"),
            ([("f",)], "is not a (name, value) pair"),
            ("not files", "files must be a dict"),
        ]
        for files, message in cases:
            with self.assertRaises(http.MultipartError) as caught:
                http.post(self.url, pool=self.pool, files=files)
            self.assertIn(message, str(caught.exception))
        good = self.write("ok.txt", b"fine")
        # a bad entry after a good one: the good one's file is closed again
        with self.assertRaises(http.MultipartError):
            http.post(self.url, pool=self.pool, files=[("a", good), ("b", 1.5)])
        resp = yield http.post(self.url, pool=self.pool, files={"f": good}, as_="json")
        self.assertEqual(resp["body"]["parts"]["f"]["head"], "fine")
        self.assertEqual(self.pool.stats()["in_use"], 0)


class MaxBodyKeepsPoolTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_body_past_max_body_then_pool_usable(self) -> Any:
        from twisted_aleph import stream
        import itertools
        from klein import Klein
        app = Klein()

        @app.route("/endless")
        def endless(request: Any) -> dict:
            return {"body": stream.to_source(itertools.repeat(b"x" * 4096))}

        @app.route("/small")
        def small(request: Any) -> bytes:
            return b"small"
        srv = http.start_server(app, 0, interface="127.0.0.1")
        self.addCleanup(srv.close)
        base = f"http://127.0.0.1:{srv.port}"
        pool = http.connection_pool(max_per_host=1, max_body=50000)
        self.addCleanup(pool.close)
        with self.assertRaises(http.BodyTooLarge):
            yield http.get(base + "/endless", pool=pool)
        resp = yield http.get(base + "/small", pool=pool, pool_timeout=10)
        self.assertEqual(resp["body"].read(), b"small")
        self.assertEqual(pool.stats()["in_use"], 0)


def _cookie(domain: str, name: str, value: str) -> Any:
    from treq.cookies import scoped_cookie
    return scoped_cookie(f"http://{domain}", name, value)


def _remove_tree(path: str) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)
