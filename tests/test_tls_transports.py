"""TLS through our transports, over real sockets on 127.0.0.1 port 0.

For both HTTP (``http.start_server(tls=)`` and ``connection_pool(tls=)``)
and TCP (``tcp.start_server(tls=)`` and ``tcp.client(tls=)``): mutual TLS
works, and each bad case is refused with an error that names TLS
(``tls.TLSError``): no client certificate, one from another CA, an expired
certificate, the wrong hostname; a plaintext client is closed without
harming the good client after it. Also ``curl`` as an independent client,
and the twistd plugins' ``--tls-*`` options.

Certificates are generated per test (``tls.generate_pki``). Under TLS 1.3
(OpenSSL's default) a server refuses a client's certificate *after* the
client's side of the handshake is done: HTTP still fails the request with
TLSError; a TCP client gets a stream that closes, with the refusal in
``info["tls_error"]`` (tested under TLS 1.2 too, where ``tcp.client`` fails).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING, Any, Callable, List

from twisted.application.service import IServiceMaker
from twisted.internet import defer, protocol, reactor, utils
from twisted.internet.defer import Deferred
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial import unittest

from twisted_aleph import bytestreams, http, stream, tcp, tls
from twisted_aleph.demo import http as demo_http

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A mixin of test methods is not a TestCase of its own (trial would run it
# alone), but mypy should check it as one.
_TestCaseForTyping: Any = unittest.TestCase if TYPE_CHECKING else object


def make_pki(test: unittest.TestCase, **kwargs: Any) -> tls.PKIFiles:
    directory = test.mktemp()
    os.makedirs(directory)
    return tls.generate_pki(directory, **kwargs)


def mutual(files: tls.PKIFiles) -> Any:
    """A server context that requires client certificates from ``files``' CA."""
    return tls.server_context(files.server_cert, files.server_key, ca=files.ca_cert,
                              require_client_cert=True)


def tls12_mutual(files: tls.PKIFiles) -> Any:
    """Like :func:`mutual`, but capped at TLS 1.2, where the server's refusal
    comes before the client's side of the handshake is done."""
    from OpenSSL import SSL
    options = mutual(files)
    options.getContext().set_max_proto_version(SSL.TLS1_2_VERSION)
    return options


def lost(s: Any) -> Deferred:
    """Fires once the connection behind the duplex stream ``s`` is gone."""
    d: Deferred = Deferred()
    s.source.on_closed(lambda: d.called or d.callback(None))
    return d


class RawClient(protocol.Protocol):
    """A plaintext client: writes ``greeting``, keeps what comes back."""

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.received = b""
        self.closed: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(self.received)


def plaintext(port: int, greeting: bytes) -> Deferred:
    """Deferred of what a plaintext client got before the server closed it."""
    client = RawClient(greeting)
    protocol.ClientCreator(reactor, lambda: client).connectTCP("127.0.0.1", port)
    return client.closed


def assert_no_application_data(test: unittest.TestCase, received: bytes) -> None:
    # nothing but, at most, a TLS alert record (content type 21) from OpenSSL 3+
    test.assertTrue(received == b"" or received[:1] == b"\x15", received)


# -- HTTP ----------------------------------------------------------------------

class RefusalCases(_TestCaseForTyping):
    """The refusals every TLS transport must get right, each with an error
    that names TLS; a subclass says how to serve (``serve(context)``) and how
    a refusal shows (``refused``: the client refused the server;
    ``refused_by_server``: the server refused the client's certificate)."""

    #: what the error says when the client sends no certificate (TLS 1.3)
    no_certificate_reason = "certificate"

    def setUp(self) -> None:
        self.files = make_pki(self)

    def serve(self, context: Any) -> int:
        raise NotImplementedError

    async def refused(self, port: int, host: str = "localhost", **client: Any) -> tls.TLSError:
        raise NotImplementedError

    async def refused_by_server(self, port: int, **client: Any) -> tls.TLSError:
        return await self.refused(port, **client)

    def assert_handler_never_ran(self) -> None:
        """After a refusal: the application saw nothing (where it can tell)."""

    async def test_no_client_certificate_refused(self) -> None:
        f = self.files
        port = self.serve(mutual(f))
        e = await self.refused_by_server(port, ca=f.ca_cert)
        self.assertIn(self.no_certificate_reason, str(e))
        self.assert_handler_never_ran()

    async def test_no_client_certificate_refused_tls12(self) -> None:
        f = self.files
        port = self.serve(tls12_mutual(f))
        e = await self.refused(port, ca=f.ca_cert)
        self.assertIn("handshake failure", str(e))
        self.assert_handler_never_ran()

    async def test_client_certificate_from_other_ca_refused(self) -> None:
        # another CA by another name (one with the same name is refused as
        # "decrypt error": its signature does not verify)
        f, other = self.files, make_pki(self, prefix="other-")
        port = self.serve(mutual(f))
        e = await self.refused_by_server(port, ca=f.ca_cert, cert=other.client_cert,
                                         key=other.client_key)
        self.assertIn("unknown ca", str(e))
        self.assert_handler_never_ran()

    async def test_expired_client_certificate_refused(self) -> None:
        f, old = self.files, make_pki(self, expired=True)
        port = self.serve(tls.server_context(f.server_cert, f.server_key, ca=old.ca_cert,
                                             require_client_cert=True))
        e = await self.refused_by_server(port, ca=f.ca_cert, cert=old.client_cert,
                                         key=old.client_key)
        self.assertIn("certificate expired", str(e))
        self.assert_handler_never_ran()

    async def test_expired_server_certificate_refused_by_client(self) -> None:
        old = make_pki(self, expired=True)
        port = self.serve(tls.server_context(old.server_cert, old.server_key))
        e = await self.refused(port, ca=old.ca_cert)
        self.assertIn("certificate verify failed", str(e))

    async def test_wrong_hostname_refused_by_client(self) -> None:
        elsewhere = make_pki(self, hostnames=("elsewhere.example",))
        port = self.serve(tls.server_context(elsewhere.server_cert, elsewhere.server_key))
        e = await self.refused(port, host="127.0.0.1", ca=elsewhere.ca_cert)
        self.assertIn("not valid for 127.0.0.1", str(e))
        self.assertIn("VerificationError", type(e.reason).__name__)

    async def test_untrusted_server_refused_by_client(self) -> None:
        f, other = self.files, make_pki(self)
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        e = await self.refused(port, ca=other.ca_cert)
        self.assertIn("certificate verify failed", str(e))


class HTTPSTests(RefusalCases, unittest.TestCase):
    def serve(self, context: Any) -> int:
        server = http.start_server(demo_http.make_app(websocket=False), 0,
                                   interface="127.0.0.1", tls=context)
        self.addCleanup(server.close)
        return server.port

    def pool(self, **client: Any) -> Any:
        pool = http.connection_pool(tls=tls.client_context(**client))
        self.addCleanup(pool.close)
        return pool

    async def hello(self, port: int, host: str = "localhost", **client: Any) -> str:
        resp = await http.get(f"https://{host}:{port}/hello", pool=self.pool(**client))
        self.assertEqual(resp["status"], 200)
        return bytestreams.to_string(resp["body"])

    async def refused(self, port: int, host: str = "localhost", **client: Any) -> tls.TLSError:
        pool = self.pool(**client)
        try:
            resp = await http.get(f"https://{host}:{port}/hello", pool=pool)
        except tls.TLSError as e:
            self.assertIn(f"https://{host}:{port}", str(e))
            self.assertIn("TLS", str(e))
            return e
        self.fail(f"expected a TLSError, got {resp!r}")

    async def test_mutual_tls_round_trip(self) -> None:
        f = self.files
        port = self.serve(mutual(f))
        text = await self.hello(port, ca=f.ca_cert, cert=f.client_cert, key=f.client_key)
        self.assertEqual(text, "hello world!")

    async def test_plain_http_client_closed_good_client_served(self) -> None:
        f = self.files
        port = self.serve(mutual(f))
        received = await plaintext(port, b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert_no_application_data(self, received)
        text = await self.hello(port, ca=f.ca_cert, cert=f.client_cert, key=f.client_key)
        self.assertEqual(text, "hello world!")

    async def test_plain_http_url_against_tls_port_fails(self) -> None:
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        pool = http.connection_pool()
        self.addCleanup(pool.close)
        with self.assertRaises(Exception) as caught:
            await http.get(f"http://127.0.0.1:{port}/hello", pool=pool)
        self.assertNotIsInstance(caught.exception, tls.TLSError)  # not TLS on our side

    async def test_curl_is_an_independent_client(self) -> None:
        curl = shutil.which("curl")
        if curl is None:
            raise unittest.SkipTest("curl is not installed")
        f = self.files
        port = self.serve(mutual(f))
        url = f"https://localhost:{port}/hello"
        base = ["--silent", "--show-error", "--max-time", "20", "--cacert", f.ca_cert]
        out, err, code = await utils.getProcessOutputAndValue(
            curl, base + ["--cert", f.client_cert, "--key", f.client_key, url],
            env=os.environ)
        self.assertEqual((out, code), (b"hello world!", 0), err)
        out, err, code = await utils.getProcessOutputAndValue(curl, base + [url],
                                                              env=os.environ)
        self.assertNotEqual(code, 0)
        self.assertEqual(out, b"")


# -- TCP -----------------------------------------------------------------------

def echo(s: Any, info: dict) -> None:
    stream.connect(s, s)


class WSSTests(unittest.TestCase):
    """wss:// with our websocket_client: round trip, and refusals as TLSError."""

    def setUp(self) -> None:
        self.files = make_pki(self)

    def serve(self, context: Any) -> int:
        server = http.start_server(demo_http.make_app(), 0, interface="127.0.0.1", tls=context)
        self.addCleanup(server.close)
        return server.port

    async def test_echo_over_wss_with_client_certificate(self) -> None:
        f = self.files
        port = self.serve(mutual(f))
        conn = await http.websocket_client(
            f"wss://localhost:{port}/echo",
            tls=tls.client_context(ca=f.ca_cert, cert=f.client_cert, key=f.client_key))
        self.addCleanup(conn.close)
        await conn.put("over TLS")
        self.assertEqual(await conn.take(), "over TLS")

    async def test_untrusted_server_is_a_tls_error(self) -> None:
        f, other = self.files, make_pki(self)
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        with self.assertRaises(tls.TLSError) as caught:
            await http.websocket_client(f"wss://localhost:{port}/echo",
                                        tls=tls.client_context(ca=other.ca_cert))
        self.assertIn(f"wss://localhost:{port}", str(caught.exception))
        self.assertIn("certificate verify failed", str(caught.exception))

    async def test_wrong_hostname_is_a_tls_error(self) -> None:
        elsewhere = make_pki(self, hostnames=("elsewhere.example",))
        port = self.serve(tls.server_context(elsewhere.server_cert, elsewhere.server_key))
        with self.assertRaises(tls.TLSError) as caught:
            await http.websocket_client(f"wss://127.0.0.1:{port}/echo",
                                        tls=tls.client_context(ca=elsewhere.ca_cert))
        self.assertIn("not valid for 127.0.0.1", str(caught.exception))


class TCPTLSTests(RefusalCases, unittest.TestCase):
    no_certificate_reason = "certificate required"

    def setUp(self) -> None:
        super().setUp()
        self.infos: List[dict] = []

    def assert_handler_never_ran(self) -> None:
        self.assertEqual(self.infos, [])

    def serve(self, context: Any, handler: Callable[[Any, dict], Any] = echo) -> int:
        def recording(s: Any, info: dict) -> Any:
            peer = info["ssl_session"].get_peer_certificate()
            self.infos.append({"peer_cn": peer and peer.get_subject().CN, **info})
            return handler(s, info)
        server = tcp.start_server(recording, 0, interface="127.0.0.1", tls=context)
        self.addCleanup(server.close)
        return server.port

    async def connect(self, port: int, host: str = "localhost", **client: Any) -> Any:
        s = await tcp.client(host, port, tls=tls.client_context(**client))

        def stop() -> Deferred:
            s.close()
            return lost(s)
        self.addCleanup(stop)
        return s

    async def refused(self, port: int, host: str = "localhost", **client: Any) -> tls.TLSError:
        """The client's Deferred fails with TLSError (its side refused the server)."""
        try:
            s = await tcp.client(host, port, tls=tls.client_context(**client))
        except tls.TLSError as e:
            self.assertIn(f":{port}", str(e))
            return e
        s.close()
        self.fail(f"expected a TLSError, got {s!r}")

    async def refused_by_server(self, port: int, **client: Any) -> tls.TLSError:
        """The server refuses the client's certificate: under TLS 1.3 the
        client's Deferred has fired; its stream closes with nothing echoed."""
        try:
            s = await tcp.client("localhost", port, tls=tls.client_context(**client))
        except tls.TLSError as e:
            return e
        await s.put(b"ping")
        self.assertIsNone(await s.take())  # closed: the server never echoed
        error = s.info.get("tls_error")
        self.assertIsInstance(error, tls.TLSError)
        return error

    async def test_mutual_tls_round_trip(self) -> None:
        f = self.files
        port = self.serve(mutual(f))
        s = await self.connect(port, ca=f.ca_cert, cert=f.client_cert, key=f.client_key)
        self.assertIs(await s.put(b"ping"), True)
        self.assertEqual(await s.take(), b"ping")
        # the handler ran after the handshake: the client's certificate is there
        self.assertEqual(self.infos[0]["peer_cn"], "client")
        self.assertIsNotNone(s.info["ssl_session"])
        self.assertNotIn("tls_error", s.info)

    async def test_framed_mutual_tls(self) -> None:
        f = self.files
        server = tcp.start_framed_server(
            lambda s, info: stream.connect(stream.map(lambda x: x + 1, s), s), 0,
            interface="127.0.0.1", tls=mutual(f))
        self.addCleanup(server.close)
        s = await tcp.framed_client("localhost", server.port, tls=tls.client_context(
            ca=f.ca_cert, cert=f.client_cert, key=f.client_key))
        self.addCleanup(lambda: (s.close(), lost(s))[1])
        await s.put(41)
        self.assertEqual(await s.take(), 42)

    async def test_plaintext_client_closed_good_client_served(self) -> None:
        f = self.files
        port = self.serve(mutual(f))
        good = await self.connect(port, ca=f.ca_cert, cert=f.client_cert, key=f.client_key)
        received = await plaintext(port, b"\x00\x00\x00\x04ping" * 100)
        assert_no_application_data(self, received)
        # the connection opened before it, and one opened after it, are served
        await good.put(b"still here")
        self.assertEqual(await good.take(), b"still here")
        after = await self.connect(port, ca=f.ca_cert, cert=f.client_cert, key=f.client_key)
        await after.put(b"after")
        self.assertEqual(await after.take(), b"after")
        self.assertEqual(len(self.infos), 2)  # the plaintext client never reached the handler

    async def test_connection_refused_is_not_a_tls_error(self) -> None:
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        server_port = port
        # a port nobody listens on: bind one, note it, close it
        listening = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
        free = listening.getHost().port
        await listening.stopListening()
        self.assertNotEqual(free, server_port)
        from twisted.internet.error import ConnectError
        with self.assertRaises(ConnectError):
            await tcp.client("127.0.0.1", free, tls=tls.client_context(ca=f.ca_cert))

    async def test_cancelling_the_connect_closes_it(self) -> None:
        f = self.files
        accepted: List[Any] = []
        port = self.serve(tls.server_context(f.server_cert, f.server_key),
                          lambda s, info: accepted.append(s))
        d = tcp.client("localhost", port, tls=tls.client_context(ca=f.ca_cert))
        d.cancel()
        with self.assertRaises(defer.CancelledError):
            await d
        self.assertEqual(accepted, [])


# -- twistd plugins --------------------------------------------------------------

def plugin(name: str) -> Any:
    [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == name]
    return maker


class PluginOptionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.files = make_pki(self)

    def parse(self, name: str, *args: str) -> Any:
        options = plugin(name).options()
        options.parseOptions(["--port", "0", "--interface", "127.0.0.1", *args])
        return options

    def mutual_args(self) -> List[str]:
        f = self.files
        return ["--tls-cert", f.server_cert, "--tls-key", f.server_key,
                "--tls-ca", f.ca_cert, "--require-client-cert"]

    def test_no_tls_options_means_plain(self) -> None:
        for name in ("aleph-http", "aleph-tcp"):
            self.assertIsNone(self.parse(name)["tls"])

    def test_bad_combinations_are_usage_errors(self) -> None:
        f = self.files
        cases = [
            (["--tls-key", f.server_key], "--tls-key needs --tls-cert"),
            (["--tls-cert", f.server_cert], "--tls-cert needs --tls-key"),
            (["--tls-cert", f.server_cert, "--tls-key", f.server_key, "--require-client-cert"],
             "--require-client-cert needs --tls-ca"),
            (["--tls-ca", f.ca_cert], "--tls-ca needs --tls-cert"),
            (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", f.server_key],
             "cannot read"),
            (["--tls-cert", f.server_cert, "--tls-key", f.client_key], "cannot load key"),
            (["--tls-cert", f.server_cert, "--tls-key", f.server_key, "--tls-ca",
              f.server_key], "no PEM certificate"),
        ]
        for name in ("aleph-http", "aleph-tcp"):
            for args, message in cases:
                e = self.assertRaises(usage.UsageError, self.parse, name, *args)
                self.assertIn(message, str(e), (name, args))

    async def test_aleph_http_serves_mutual_tls(self) -> None:
        f = self.files
        service = plugin("aleph-http").makeService(self.parse("aleph-http", *self.mutual_args()))
        service.startService()
        self.addCleanup(service.stopService)
        url = f"https://localhost:{service.server.port}/hello"
        pool = http.connection_pool(tls=tls.client_context(ca=f.ca_cert, cert=f.client_cert,
                                                           key=f.client_key))
        self.addCleanup(pool.close)
        resp = await http.get(url, pool=pool)
        self.assertEqual(bytestreams.to_string(resp["body"]), "hello world!")
        bare = http.connection_pool(tls=tls.client_context(ca=f.ca_cert))
        self.addCleanup(bare.close)
        with self.assertRaises(tls.TLSError):
            await http.get(url, pool=bare)

    async def test_aleph_tcp_serves_mutual_tls(self) -> None:
        from twisted_aleph.demo import tcp as demo_tcp
        f = self.files
        service = plugin("aleph-tcp").makeService(self.parse("aleph-tcp", *self.mutual_args()))
        service.startService()
        self.addCleanup(service.stopService)
        s = await demo_tcp.client("localhost", service.server.port, tls=tls.client_context(
            ca=f.ca_cert, cert=f.client_cert, key=f.client_key))
        self.addCleanup(lambda: (s.close(), lost(s))[1])
        await s.put(1)
        self.assertEqual(await s.take(), 2)

    async def test_twistd_prints_a_usage_error_not_a_traceback(self) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out, err, code = await utils.getProcessOutputAndValue(
            sys.executable, ["-c", "from twisted.scripts.twistd import run; run()",
                             "-n", "aleph-http", "--tls-key", self.files.server_key],
            env=env, path=ROOT)
        # (the exit status is twistd's: 1 since Twisted 26, 0 before)
        text = (out + err).decode("utf-8", "replace")
        self.assertIn(": --tls-key needs --tls-cert", text)
        self.assertIn("--require-client-cert", text)  # the usage text lists the options
        self.assertNotIn("Traceback", text)


class ErrorTextTests(unittest.TestCase):
    def test_openssl_reasons_without_tuple_noise(self) -> None:
        from OpenSSL import SSL
        error = SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")])
        e = tls.TLSError("localhost:1", error)
        self.assertEqual(str(e), "TLS with localhost:1 failed: tlsv13 alert certificate required")
        self.assertIs(e.reason, error)

    def test_found_inside_twisted_wrappers(self) -> None:
        from OpenSSL import SSL
        from twisted.python.failure import Failure
        from twisted.web._newclient import ResponseNeverReceived
        error = SSL.Error([("SSL routines", "", "certificate verify failed")])
        wrapped = ResponseNeverReceived([Failure(error)])
        self.assertIs(tls.tls_error_in(Failure(wrapped)), error)
        self.assertIsNone(tls.tls_error_in(Failure(ResponseNeverReceived([Failure(
            ValueError("not tls"))]))))
        self.assertIsNone(tls.tls_error_in(None))

    def test_http_error_names_the_server_without_credentials(self) -> None:
        from OpenSSL import SSL
        from twisted.python.failure import Failure
        from twisted.web._newclient import ResponseNeverReceived

        from twisted_aleph.http.client import _name_tls_failure
        failure = Failure(ResponseNeverReceived([Failure(SSL.Error(
            [("SSL routines", "", "certificate verify failed")]))]))
        e = self.assertRaises(tls.TLSError, _name_tls_failure, failure,
                              "https://user:secret@example.com:8443/path?token=1")
        self.assertEqual(e.peer, "https://example.com:8443")
        self.assertNotIn("secret", str(e))
        self.assertNotIn("token", str(e))
        self.assertIsInstance(e.__cause__, ResponseNeverReceived)
