"""TLS contexts over real sockets on 127.0.0.1, with plain Twisted protocols.

These check twisted_aleph.tls alone: the certificates it loads, the
mutual-TLS refusals, hostname checks. Transport-level TLS (tcp, http) is
tested beside those transports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, protocol, reactor
from twisted.internet.error import ConnectionDone
from twisted.trial import unittest

from twisted_aleph import tls


class Echo(protocol.Protocol):
    """Echoes until a newline, then hangs up (so command-line clients exit)."""

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)
        if data.endswith(b"\n"):
            self.transport.loseConnection()


class Probe(protocol.Protocol):
    """Sends a line once connected; collects what comes back until closed."""

    def __init__(self) -> None:
        self.received = b""
        self.done: defer.Deferred = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"ping\n")

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received.endswith(b"\n"):
            self.transport.loseConnection()

    def connectionLost(self, reason: object) -> None:
        self.done.callback((self.received, reason))


def pki(test: unittest.TestCase, **kwargs: object) -> tls.PKIFiles:
    directory = tempfile.mkdtemp()
    test.addCleanup(shutil.rmtree, directory)
    return tls.generate_pki(directory, **kwargs)  # type: ignore[arg-type]


class TLSRoundTrip(unittest.TestCase):
    def setUp(self) -> None:
        self.files = pki(self)

    def serve(self, ctx: object) -> int:
        factory = protocol.Factory.forProtocol(Echo)
        port = reactor.listenSSL(0, factory, ctx, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def probe(self, port: int, creator: object) -> defer.Deferred:
        p = Probe()
        factory = protocol.ClientFactory.forProtocol(lambda: p)
        reactor.connectSSL("127.0.0.1", port, factory, creator)
        return p.done

    @defer.inlineCallbacks
    def test_mutual_tls_round_trip(self) -> defer.Generator:
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key, ca=f.ca_cert,
                                             require_client_cert=True))
        client = tls.client_context(ca=f.ca_cert, cert=f.client_cert, key=f.client_key)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"ping\n")
        self.assertTrue(reason.check(ConnectionDone))

    @defer.inlineCallbacks
    def test_no_client_certificate_refused(self) -> defer.Generator:
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key, ca=f.ca_cert,
                                             require_client_cert=True))
        client = tls.client_context(ca=f.ca_cert)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"")
        self.assertFalse(reason.check(ConnectionDone))

    @defer.inlineCallbacks
    def test_client_certificate_from_other_ca_refused(self) -> defer.Generator:
        f = self.files
        other = pki(self)
        port = self.serve(tls.server_context(f.server_cert, f.server_key, ca=f.ca_cert,
                                             require_client_cert=True))
        client = tls.client_context(ca=f.ca_cert, cert=other.client_cert, key=other.client_key)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"")

    @defer.inlineCallbacks
    def test_expired_client_certificate_refused(self) -> defer.Generator:
        f = self.files
        old = pki(self, expired=True)
        port = self.serve(tls.server_context(f.server_cert, f.server_key, ca=old.ca_cert,
                                             require_client_cert=True))
        client = tls.client_context(ca=f.ca_cert, cert=old.client_cert, key=old.client_key)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"")

    @defer.inlineCallbacks
    def test_expired_server_certificate_refused_by_client(self) -> defer.Generator:
        old = pki(self, expired=True)
        port = self.serve(tls.server_context(old.server_cert, old.server_key))
        client = tls.client_context(ca=old.ca_cert)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"")

    @defer.inlineCallbacks
    def test_wrong_hostname_refused_by_client(self) -> defer.Generator:
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        client = tls.client_context(ca=f.ca_cert, hostname="not-the-server.example")
        received, reason = yield self.probe(port, client.creator_for("127.0.0.1"))
        self.assertEqual(received, b"")
        self.assertFalse(reason.check(ConnectionDone))
        self.assertEqual(tls.describe(tls.tls_error_in(reason)),
                         "the server's certificate is not valid for not-the-server.example")

    @defer.inlineCallbacks
    def test_untrusted_server_refused_by_client(self) -> defer.Generator:
        f = self.files
        other = pki(self)
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        client = tls.client_context(ca=other.ca_cert)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"")

    @defer.inlineCallbacks
    def test_plaintext_client_closed_others_unharmed(self) -> defer.Generator:
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key))
        plain = Probe()
        reactor.connectTCP("127.0.0.1", port,
                           protocol.ClientFactory.forProtocol(lambda: plain))
        received, reason = yield plain.done
        # closed with nothing echoed; OpenSSL 3 first sends an alert record
        self.assertTrue(received == b"" or received[:1] == b"\x15", received)
        client = tls.client_context(ca=f.ca_cert)
        received, reason = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"ping\n")

    @defer.inlineCallbacks
    def test_traditional_pem_key_accepted(self) -> defer.Generator:
        f = self.files
        with open(f.server_key, "rb") as fh:
            key = serialization.load_pem_private_key(fh.read(), None)
        traditional = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
        self.assertIn(b"BEGIN EC PRIVATE KEY", traditional)
        port = self.serve(tls.server_context(f.server_cert, traditional))
        client = tls.client_context(ca=f.ca_cert)
        received, _ = yield self.probe(port, client.creator_for("localhost"))
        self.assertEqual(received, b"ping\n")

    @defer.inlineCallbacks
    def test_openssl_s_client_completes_mutual_handshake(self) -> defer.Generator:
        """An independent client: the openssl binary, run in a thread."""
        openssl = shutil.which("openssl")
        if openssl is None:
            raise unittest.SkipTest("openssl binary not installed")
        f = self.files
        port = self.serve(tls.server_context(f.server_cert, f.server_key, ca=f.ca_cert,
                                             require_client_cert=True))

        def run(with_cert: bool) -> subprocess.CompletedProcess:
            args = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile",
                    f.ca_cert, "-verify_return_error", "-quiet"]
            if with_cert:
                args += ["-cert", f.client_cert, "-key", f.client_key]
            return subprocess.run(args, input=b"hello\n", capture_output=True, timeout=20)

        from twisted.internet import threads
        ok = yield threads.deferToThread(run, True)
        self.assertEqual(ok.stdout, b"hello\n")
        refused = yield threads.deferToThread(run, False)
        self.assertEqual(refused.stdout, b"")


class ContextErrors(unittest.TestCase):
    def test_missing_file_is_a_clear_error(self) -> None:
        e = self.assertRaises(tls.TLSConfigError, tls.server_context,
                              "/nonexistent/cert.pem", "/nonexistent/key.pem")
        self.assertIn("cannot read", str(e))

    def test_require_client_cert_needs_ca(self) -> None:
        f = pki(self)
        self.assertRaises(tls.TLSConfigError, tls.server_context, f.server_cert,
                          f.server_key, require_client_cert=True)

    def test_cert_without_key(self) -> None:
        f = pki(self)
        self.assertRaises(tls.TLSConfigError, tls.client_context, ca=f.ca_cert,
                          cert=f.client_cert)

    def test_garbage_pem(self) -> None:
        self.assertRaises(tls.TLSConfigError, tls.client_context, ca=b"not a pem")

    def test_broken_certificate_is_blamed_not_its_key(self) -> None:
        f = pki(self)
        broken = (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                  b"-----END CERTIFICATE-----\n")
        e = self.assertRaises(tls.TLSConfigError, tls.server_context, broken, f.server_key)
        self.assertIn("bad certificate", str(e))
        self.assertNotIn("cannot load key", str(e))

    def test_generated_key_is_pkcs8(self) -> None:
        f = pki(self)
        with open(f.client_key, "rb") as fh:
            self.assertTrue(fh.read().startswith(b"-----BEGIN PRIVATE KEY-----"))
        self.assertTrue(os.path.exists(f.ca_cert))

    def test_minimum_version_is_tls12(self) -> None:
        f = pki(self)
        from OpenSSL import SSL
        ctx = tls.server_context(f.server_cert, f.server_key).getContext()
        options = ctx.set_options(0)  # returns the options in force
        self.assertTrue(options & SSL.OP_NO_TLSv1)
        self.assertTrue(options & SSL.OP_NO_TLSv1_1)
