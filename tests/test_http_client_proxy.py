"""The client through HTTP proxies: settings, a real proxy, and bad proxies.

* ``ProxySettings``: which URLs use which proxy (pure, no I/O);
* a real proxy (Debian's ``tinyproxy``, started per test on a free port of
  127.0.0.1 with a config written to a temporary directory; skipped with the
  reason when the binary is absent, ``.ci/run`` installs it): plain HTTP,
  CONNECT to a TLS origin made with ``tls.generate_pki`` (its certificate
  checked against the origin), a CONNECT refused with 403 and one refused
  with 407, credentials, ``no_proxy`` and ``trust_env``;
* small Twisted proxies that misbehave on purpose: hang up in the middle of
  the CONNECT reply, hang up right after opening the tunnel, answer garbage;
  each a clear ``ProxyError``, then the same pool works through the tunnel.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any, Dict, List, Optional

from klein import Klein
from twisted.internet import defer, endpoints, protocol, reactor
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial import unittest

from twisted_aleph import http, tls
from twisted_aleph.http.proxy import ProxySettings

TINYPROXY = shutil.which("tinyproxy") or (
    "/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None)


def origin_app() -> Klein:
    app = Klein()

    @app.route("/hello")
    def hello(request: Any) -> dict:
        via = request.getHeader("via") or ""
        return {"headers": {"x-seen-via": via}, "body": "hello through " + request.uri.decode()}
    return app


class ProxySettingsTests(unittest.TestCase):

    def test_one_url_for_both_schemes_with_credentials(self) -> None:
        settings = ProxySettings("http://ann:p%40ss@proxy.test:3128")
        http_proxy = settings.proxy_for("http", "example.com", 80)
        self.assertIs(http_proxy, settings.proxy_for("https", "example.com", 443))
        self.assertEqual(http_proxy.url, "http://proxy.test:3128")  # no password in it
        self.assertEqual(http_proxy.authorization, b"Basic YW5uOnBAc3M=")  # ann:p@ss

    def test_per_scheme_auth_and_no_proxy(self) -> None:
        settings = ProxySettings({"https": "http://tunnel.test:8080"}, proxy_auth=("u", "p"),
                                 no_proxy=["internal.test", ".corp.test", "10.0.0.1"])
        self.assertIsNone(settings.proxy_for("http", "example.com", 80))
        proxy = settings.proxy_for("https", "example.com", 443)
        self.assertEqual((proxy.host, proxy.port), ("tunnel.test", 8080))
        self.assertEqual(proxy.authorization, b"Basic dTpw")
        for host in ("internal.test", "a.corp.test", "10.0.0.1"):
            self.assertIsNone(settings.proxy_for("https", host, 443), host)
        star = ProxySettings("http://p.test:1", no_proxy="*")
        self.assertIsNone(star.proxy_for("http", "anything.test", 80))
        by_port = ProxySettings("http://p.test:1", no_proxy="example.com:8080")
        self.assertIsNone(by_port.proxy_for("http", "example.com", 8080))
        self.assertIsNotNone(by_port.proxy_for("http", "example.com", 80))

    def test_environment_only_when_trusted(self) -> None:
        saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                                                 "http_proxy", "https_proxy", "no_proxy")}

        def restore() -> None:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.addCleanup(restore)
        for k in saved:
            os.environ.pop(k, None)
        os.environ["HTTP_PROXY"] = "http://env.test:3128"
        os.environ["NO_PROXY"] = "direct.test"
        self.assertFalse(ProxySettings())
        trusted = ProxySettings(trust_env=True)
        self.assertEqual(trusted.proxy_for("http", "x.test", 80).url, "http://env.test:3128")
        self.assertIsNone(trusted.proxy_for("https", "x.test", 443))
        self.assertIsNone(trusted.proxy_for("http", "direct.test", 80))
        # arguments win over the environment
        mine = ProxySettings("http://mine.test:1", no_proxy="", trust_env=True)
        self.assertEqual(mine.proxy_for("http", "direct.test", 80).url, "http://mine.test:1")

    def test_bad_proxy_values(self) -> None:
        for bad, message in [("https://p.test:1", "only http:// proxies"),
                             ("socks5://p.test:1", "only http:// proxies"),
                             ("http://:8080", "has no host"),
                             ("http://p.test:99999", "Port out of range")]:
            with self.assertRaises(ValueError) as caught:
                ProxySettings(bad)
            self.assertIn(message, str(caught.exception))
        self.assertRaises(ValueError, ProxySettings, {"ftp": "http://p.test:1"})
        self.assertRaises(TypeError, ProxySettings, "http://p.test:1", proxy_auth="u:p")
        with self.assertRaises(ValueError) as caught:
            http.connection_pool(proxy="http://ann:secret@p.test:99999")
        self.assertNotIn("secret", str(caught.exception))


class _TinyproxyProcess(protocol.ProcessProtocol):
    """Waits for tinyproxy's "Starting main loop" (or its exit)."""

    def __init__(self) -> None:
        self.ready: Deferred = Deferred()
        self.ended: Deferred = Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:
        self._seen(data)

    def errReceived(self, data: bytes) -> None:
        self._seen(data)

    def _seen(self, data: bytes) -> None:
        self.output += data
        if b"Starting main loop" in self.output and not self.ready.called:
            self.ready.callback(True)

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.callback(False)
        self.ended.callback(None)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TinyproxyTestCase(unittest.TestCase):

    if TINYPROXY is None:
        skip = ("tinyproxy is not installed (Debian: apt-get install tinyproxy-bin;"
                " .ci/run installs it)")

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir, True)

    @defer.inlineCallbacks
    def tinyproxy(self, *extra: str) -> Any:
        """Start tinyproxy with ``extra`` config lines; its URL."""
        for attempt in range(3):  # the free port may be taken before tinyproxy binds it
            port = _free_port()
            config = os.path.join(self.dir, f"tinyproxy-{attempt}.conf")
            with open(config, "w") as f:
                f.write("\n".join([f"Port {port}", "Listen 127.0.0.1", "Timeout 30",
                                   "LogLevel Info", "MaxClients 50", "Allow 127.0.0.1",
                                   *extra]) + "\n")
            process = _TinyproxyProcess()
            transport = reactor.spawnProcess(  # type: ignore[attr-defined]
                process, TINYPROXY, [TINYPROXY, "-d", "-c", config], env=None)
            started = yield process.ready
            if started:
                def stop(transport: Any = transport, process: Any = process) -> Deferred:
                    if not process.ended.called:
                        transport.signalProcess("TERM")
                    return process.ended
                self.addCleanup(stop)
                return f"http://127.0.0.1:{port}"
            last = process.output
        self.fail(f"tinyproxy did not start: {last[-500:]!r}")

    def origin(self, *, tls_context: Any = None) -> int:
        srv = http.start_server(origin_app(), 0, interface="127.0.0.1", tls=tls_context)
        self.addCleanup(srv.close)
        return srv.port

    def pki(self, **kwargs: Any) -> Any:
        return tls.generate_pki(self.dir, **kwargs)

    def pool(self, **kwargs: Any) -> Any:
        pool = http.connection_pool(**kwargs)
        self.addCleanup(pool.close)
        return pool


class RealProxyTests(TinyproxyTestCase):

    @defer.inlineCallbacks
    def test_plain_http_through_the_proxy(self) -> Any:
        proxy = yield self.tinyproxy()
        port = self.origin()
        pool = self.pool(proxy=proxy)
        # tinyproxy answers HTTP/1.1 without "Connection: close" and then closes: the
        # second request goes out on that connection, gets nothing, and is sent again
        # on a new one (a GET: idempotent)
        for _ in range(2):
            resp = yield http.get(f"http://127.0.0.1:{port}/hello", pool=pool)
            self.assertEqual(resp["status"], 200)
            self.assertIn("tinyproxy", resp["headers"]["x-seen-via"])
            self.assertEqual(resp["body"].read(), b"hello through /hello")
        self.assertIn(f"proxy {proxy}", pool.stats()["hosts"])
        direct = self.pool(proxy=proxy, no_proxy="127.0.0.1")
        resp = yield http.get(f"http://127.0.0.1:{port}/hello", pool=direct)
        self.assertEqual(resp["headers"]["x-seen-via"], "")

    @defer.inlineCallbacks
    def test_https_through_a_connect_tunnel(self) -> Any:
        proxy = yield self.tinyproxy()
        pki = self.pki()
        port = self.origin(tls_context=tls.server_context(pki.server_cert, pki.server_key))
        pool = self.pool(proxy=proxy, tls=tls.client_context(ca=pki.ca_cert))
        for _ in range(2):
            resp = yield http.get(f"https://127.0.0.1:{port}/hello", pool=pool)
            self.assertEqual(resp["body"].read(), b"hello through /hello")
            self.assertEqual(resp["headers"]["x-seen-via"], "")  # a tunnel: the proxy saw bytes
        self.assertEqual(pool.stats()["open"], 1)  # one tunnel, kept alive and reused

    @defer.inlineCallbacks
    def test_tunnel_checks_the_origin_certificate(self) -> Any:
        proxy = yield self.tinyproxy()
        pki = self.pki(hostnames=("other.example",))
        port = self.origin(tls_context=tls.server_context(pki.server_cert, pki.server_key))
        pool = self.pool(proxy=proxy, tls=tls.client_context(ca=pki.ca_cert))
        with self.assertRaises(tls.TLSError) as caught:
            yield http.get(f"https://127.0.0.1:{port}/hello", pool=pool)
        self.assertEqual(caught.exception.peer, f"https://127.0.0.1:{port}")
        self.assertIn("not valid for 127.0.0.1", str(caught.exception))

    @defer.inlineCallbacks
    def test_refused_connect_403_then_pool_usable(self) -> Any:
        proxy = yield self.tinyproxy("ConnectPort 1")  # CONNECT allowed to port 1 only
        pki = self.pki()
        port = self.origin(tls_context=tls.server_context(pki.server_cert, pki.server_key))
        plain = self.origin()
        pool = self.pool(proxy=proxy, tls=tls.client_context(ca=pki.ca_cert))
        with self.assertRaises(http.ProxyError) as caught:
            yield http.get(f"https://127.0.0.1:{port}/hello", pool=pool)
        e = caught.exception
        self.assertEqual((e.status, e.proxy, e.target), (403, proxy, f"127.0.0.1:{port}"))
        self.assertIn(f"proxy {proxy} refused CONNECT 127.0.0.1:{port}: 403", str(e))
        resp = yield http.get(f"http://127.0.0.1:{plain}/hello", pool=pool)
        self.assertEqual(resp["status"], 200)
        self.assertEqual(pool.stats()["in_use"], 0)

    @defer.inlineCallbacks
    def test_proxy_authentication(self) -> Any:
        proxy = yield self.tinyproxy("BasicAuth ann s3cret")
        pki = self.pki()
        port = self.origin(tls_context=tls.server_context(pki.server_cert, pki.server_key))
        plain = self.origin()
        client_tls = tls.client_context(ca=pki.ca_cert)
        anonymous = self.pool(proxy=proxy, tls=client_tls)
        with self.assertRaises(http.ProxyError) as caught:
            yield http.get(f"https://127.0.0.1:{port}/hello", pool=anonymous)
        self.assertEqual(caught.exception.status, 407)
        self.assertIn("pass proxy_auth=(user, password)", str(caught.exception))
        resp = yield http.get(f"http://127.0.0.1:{plain}/hello", pool=anonymous)
        self.assertEqual(resp["status"], 407)  # plain HTTP: the proxy's answer is the response
        wrong = self.pool(proxy=proxy, tls=client_tls, proxy_auth=("ann", "nope"))
        with self.assertRaises(http.ProxyError) as caught:
            yield http.get(f"https://127.0.0.1:{port}/hello", pool=wrong)
        self.assertIn("rejected the proxy_auth given", str(caught.exception))
        for pool in (self.pool(proxy=proxy, tls=client_tls, proxy_auth=("ann", "s3cret")),
                     self.pool(proxy=proxy.replace("//", "//ann:s3cret@"), tls=client_tls)):
            resp = yield http.get(f"https://127.0.0.1:{port}/hello", pool=pool)
            self.assertEqual(resp["body"].read(), b"hello through /hello")
            resp = yield http.get(f"http://127.0.0.1:{plain}/hello", pool=pool)
            self.assertEqual(resp["status"], 200)

    @defer.inlineCallbacks
    def test_environment_when_trusted(self) -> Any:
        proxy = yield self.tinyproxy()
        port = self.origin()
        saved = {k: os.environ.get(k) for k in ("HTTP_PROXY", "http_proxy", "NO_PROXY",
                                                 "no_proxy")}

        def restore() -> None:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.addCleanup(restore)
        for k in saved:
            os.environ.pop(k, None)
        os.environ["HTTP_PROXY"] = proxy
        resp = yield http.get(f"http://127.0.0.1:{port}/hello", pool=self.pool(trust_env=True))
        self.assertIn("tinyproxy", resp["headers"]["x-seen-via"])
        resp = yield http.get(f"http://127.0.0.1:{port}/hello", pool=self.pool())
        self.assertEqual(resp["headers"]["x-seen-via"], "")


class _BadProxy(protocol.Protocol):
    """Reads a CONNECT and behaves as ``mode`` says: "partial" (half a status
    line, then hangs up), "after200" (opens the tunnel, then hangs up),
    "garbage" (not HTTP), "silent" (nothing; fires ``got_connect``), or
    "tunnel" (a working tunnel to the target)."""

    def __init__(self, modes: List[str], got_connect: Deferred) -> None:
        self.modes = modes
        self.got_connect = got_connect
        self.lost: Deferred = Deferred()
        self.buffer = b""
        self.upstream: Optional[protocol.Protocol] = None

    def dataReceived(self, data: bytes) -> None:
        if self.upstream is not None:
            self.upstream.transport.write(data)
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        target = head.split(b" ")[1].decode()
        mode = self.modes.pop(0) if self.modes else "tunnel"
        if mode == "partial":
            self.transport.write(b"HTTP/1.1 20")
            self.transport.loseConnection()
        elif mode == "after200":
            self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.transport.loseConnection()
        elif mode == "garbage":
            self.transport.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        elif mode == "silent":
            self.got_connect.callback(self)
        else:
            host, port = target.rsplit(":", 1)
            self.buffer = rest
            self.transport.pauseProducing()
            endpoint = endpoints.TCP4ClientEndpoint(reactor, host, int(port))
            endpoints.connectProtocol(endpoint, _Upstream(self)).addCallback(self._opened)

    def _opened(self, upstream: "_Upstream") -> None:
        self.upstream = upstream
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if self.buffer:
            upstream.transport.write(self.buffer)
        self.transport.resumeProducing()

    def connectionLost(self, reason: Any) -> None:
        self.lost.callback(None)
        if self.upstream is not None:
            self.upstream.transport.loseConnection()


class _Upstream(protocol.Protocol):
    def __init__(self, down: _BadProxy) -> None:
        self.down = down

    def dataReceived(self, data: bytes) -> None:
        self.down.transport.write(data)

    def connectionLost(self, reason: Any) -> None:
        self.down.transport.loseConnection()


class BadProxyTests(unittest.TestCase):

    @defer.inlineCallbacks
    def test_each_misbehaviour_is_a_clear_error_then_the_tunnel_works(self) -> Any:
        modes = ["partial", "after200", "garbage"]
        got_connect: Deferred = Deferred()
        factory = protocol.Factory.forProtocol(  # type: ignore[arg-type]
            lambda: _BadProxy(modes, got_connect))
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(listening.stopListening)
        proxy = f"http://127.0.0.1:{listening.getHost().port}"
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory, True)
        pki = tls.generate_pki(directory)
        srv = http.start_server(origin_app(), 0, interface="127.0.0.1",
                                tls=tls.server_context(pki.server_cert, pki.server_key))
        self.addCleanup(srv.close)
        url = f"https://127.0.0.1:{srv.port}/hello"
        pool = http.connection_pool(proxy=proxy, tls=tls.client_context(ca=pki.ca_cert),
                                    max_per_host=1)
        self.addCleanup(pool.close)
        expected: Dict[str, str] = {
            "partial": f"proxy {proxy} closed the connection before answering CONNECT"
                       f" 127.0.0.1:{srv.port}",
            "after200": f"proxy {proxy} closed the tunnel to 127.0.0.1:{srv.port} before the"
                        " server answered",
            "garbage": f"proxy {proxy} answered CONNECT 127.0.0.1:{srv.port} with something"
                       " that is not HTTP: b'SSH-2.0-OpenSSH_9.2'",
        }
        for mode in list(modes):
            with self.assertRaises(http.ProxyError) as caught:
                yield http.get(url, pool=pool)
            self.assertIn(expected[mode], str(caught.exception), mode)
            self.assertIsNone(caught.exception.status)
            self.assertEqual(pool.stats()["in_use"], 0)
        resp = yield http.get(url, pool=pool)
        self.assertEqual(resp["body"].read(), b"hello through /hello")
        # a connect_timeout covers the CONNECT exchange too (timer on a clock we move)
        modes.append("silent")
        clock = MemoryReactorClock()
        slow = http.connection_pool(proxy=proxy, tls=tls.client_context(ca=pki.ca_cert),
                                    connect_timeout=5, clock=clock)
        self.addCleanup(slow.close)
        d = http.get(url, pool=slow)
        silent = yield got_connect
        clock.advance(5)
        with self.assertRaises(http.ConnectTimeout) as caught:
            yield d
        self.assertIn(f"connecting to https://127.0.0.1:{srv.port} timed out after 5 s",
                      str(caught.exception))
        yield silent.lost  # the attempt was given up: the proxy saw us hang up
        resp = yield http.get(url, pool=slow)  # the next CONNECT is answered
        self.assertEqual(resp["status"], 200)
