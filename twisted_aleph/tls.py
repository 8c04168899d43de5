"""TLS contexts from PEM files: servers, clients, and mutual TLS.

``server_context(cert, key, ca=..., require_client_cert=True)`` builds what
``tcp.start_server(..., tls=)`` and ``http.start_server(..., tls=)`` take;
``client_context(ca=..., cert=..., key=...)`` is the seed's
``build-ssl-context`` and goes to ``tcp.client(..., tls=)`` or
``http.connection_pool(tls=)``. Built on pyOpenSSL through
``twisted.internet.ssl``; server hostnames are verified with
service_identity; TLS 1.2 is the floor and Twisted's default cipher list
(no weak ciphers) applies.

Keys may be PKCS#8 (``BEGIN PRIVATE KEY``, as the seed's ``key.k8``) or
traditional PEM (``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE KEY``).

When a handshake is refused (by either side), a certificate does not
verify, the hostname does not match, or the peer does not speak TLS, our
clients fail with :class:`TLSError`, naming the peer and OpenSSL's reason
(``tls_error_in`` finds that reason inside Twisted's wrapper failures). One
exception, TLS 1.3's: a mutual-TLS server refuses the *client's* certificate
after the client's side of the handshake is done, so a TCP client gets its
stream, which then closes, the refusal logged and kept as
``info["tls_error"]`` (see :mod:`twisted_aleph.tcp`).

The twistd commands' ``--tls-cert/--tls-key/--tls-ca/--require-client-cert``
options are :mod:`twisted_aleph.tap.options`'s.

``generate_pki(directory)`` writes a throwaway CA, server and client
certificate set, for examples and tests; never for production.
"""

from __future__ import annotations

import datetime
import os
import warnings
from typing import Any, List, NamedTuple, Optional, Sequence, Union

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from twisted_aleph.deferred import find_cause

PEMSource = Union[str, bytes, "os.PathLike[str]"]

MINIMUM_TLS = ssl.TLSVersion.TLSv1_2


class TLSConfigError(ValueError):
    """A certificate, key or CA file could not be used."""


class TLSError(Exception):
    """A TLS connection failed: the handshake was refused by either side, a
    certificate did not verify (untrusted, expired), the server's did not
    match the hostname, or the peer does not speak TLS.

    ``peer`` says where to (``host:port``, ``client host:port`` on a server,
    or the ``https://host:port`` of a request); ``reason`` is the underlying
    exception (OpenSSL's ``SSL.Error``, service_identity's
    ``VerificationError``, ...).
    """

    def __init__(self, peer: str, reason: BaseException) -> None:
        super().__init__(f"TLS with {peer} failed: {describe(reason)}")
        self.peer = peer
        self.reason = reason


def _is_tls_exception(e: BaseException) -> bool:
    # service_identity's VerificationError (hostname mismatch) is raised by
    # Twisted's hostname check; its module is the one reliable mark.
    return isinstance(e, (SSL.Error, TLSError)) or type(e).__module__.startswith(
        "service_identity")


def tls_error_in(error: Union[BaseException, Failure, None]) -> Optional[BaseException]:
    """The TLS exception behind ``error`` (through Twisted's wrappers and
    chained causes: :func:`twisted_aleph.deferred.find_cause`), or None."""
    return find_cause(error, _is_tls_exception, 16)


def describe(reason: BaseException) -> str:
    """A one-line reason for a TLS failure, without OpenSSL's tuple noise."""
    if isinstance(reason, TLSError):
        return describe(reason.reason)
    if isinstance(reason, SSL.SysCallError):
        # (errno, text): e.g. (-1, 'Unexpected EOF') when the peer hung up
        return f"connection closed during the handshake ({reason.args[-1]})"
    if isinstance(reason, SSL.Error) and reason.args and isinstance(reason.args[0], list):
        texts = [str(item[-1]) for item in reason.args[0]
                 if isinstance(item, tuple) and item and item[-1]]
        if texts:
            return "; ".join(texts)
    errors = getattr(reason, "errors", None)
    if type(reason).__module__.startswith("service_identity") and errors:
        names = []
        for error in errors:
            wanted = getattr(error, "mismatched_id", error)
            name = getattr(wanted, "hostname", None) or getattr(wanted, "ip", None) or wanted
            # service_identity keeps a DNS name as bytes
            names.append(name.decode("ascii", "replace") if isinstance(name, bytes)
                         else str(name))
        return "the server's certificate is not valid for " + ", ".join(names)
    return f"{type(reason).__name__}: {reason}"


def _read(source: PEMSource) -> bytes:
    """PEM bytes given as bytes (the PEM itself) or a path."""
    if isinstance(source, bytes):
        return source
    try:
        with open(os.fspath(source), "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {source!r}: {e.strerror}") from e


def _split_pem_certs(data: bytes) -> List[bytes]:
    marker = b"-----END CERTIFICATE-----"
    parts = []
    for chunk in data.split(marker):
        start = chunk.find(b"-----BEGIN CERTIFICATE-----")
        if start >= 0:
            parts.append(chunk[start:] + marker + b"\n")
    return parts


def _certificates(source: PEMSource) -> List[ssl.Certificate]:
    pems = _split_pem_certs(_read(source))
    if not pems:
        raise TLSConfigError(f"no PEM certificate in {source!r}")
    try:
        return [ssl.Certificate.loadPEM(p) for p in pems]
    except Exception as e:
        raise TLSConfigError(f"bad certificate in {source!r}: {e}") from e


def _private_certificate(cert: PEMSource, key: PEMSource) -> ssl.PrivateCertificate:
    cert_pem = _split_pem_certs(_read(cert))
    if not cert_pem:
        raise TLSConfigError(f"no PEM certificate in {cert!r}")
    try:  # the certificate alone first: a broken one must not be blamed on the key
        ssl.Certificate.loadPEM(cert_pem[0])
    except Exception as e:
        raise TLSConfigError(f"bad certificate in {cert!r}: {e}") from e
    try:
        return ssl.PrivateCertificate.loadPEM(cert_pem[0] + _read(key))
    except TLSConfigError:
        raise
    except Exception as e:
        raise TLSConfigError(f"cannot load key {key!r} for {cert!r}: {e}") from e


def server_context(cert: PEMSource, key: PEMSource, *, ca: Optional[PEMSource] = None,
                   require_client_cert: bool = False) -> ssl.CertificateOptions:
    """Server-side TLS options from a PEM certificate (chain) and key.

    With ``ca``, client certificates signed by that CA are verified;
    ``require_client_cert=True`` refuses handshakes without one (mutual TLS).
    """
    if require_client_cert and ca is None:
        raise TLSConfigError("require_client_cert needs a ca to verify clients against")
    private = _private_certificate(cert, key)
    chain = [c.original for c in _certificates(cert)[1:]]
    kwargs: dict = {}
    if ca is not None:
        kwargs.update(verify=True, caCerts=[c.original for c in _certificates(ca)],
                      requireCertificate=require_client_cert)
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=chain or None,
        raiseMinimumTo=MINIMUM_TLS,
        **kwargs,
    )


@implementer(IPolicyForHTTPS)
class ClientTLS:
    """Client-side TLS: trusted CA, optional client certificate, hostname check.

    Provides ``IPolicyForHTTPS`` (for treq/Agent connection pools) and
    :meth:`creator_for` (for raw TCP clients). ``hostname`` overrides the
    name verified, e.g. when connecting to 127.0.0.1 with a cert for
    ``localhost``.
    """

    def __init__(self, trust_root: Any, client_certificate: Optional[ssl.PrivateCertificate],
                 hostname: Optional[str]) -> None:
        self.trust_root = trust_root
        self.client_certificate = client_certificate
        self.hostname = hostname

    def creator_for(self, host: Union[str, bytes]) -> IOpenSSLClientConnectionCreator:
        """The connection creator for a connection to ``host``."""
        name = self.hostname or host
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return ssl.optionsForClientTLS(
            name, trustRoot=self.trust_root, clientCertificate=self.client_certificate,
            extraCertificateOptions={"raiseMinimumTo": MINIMUM_TLS},
        )

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return self.creator_for(hostname)


def client_context(*, ca: Optional[PEMSource] = None, cert: Optional[PEMSource] = None,
                   key: Optional[PEMSource] = None, hostname: Optional[str] = None) -> ClientTLS:
    """The seed's ``build-ssl-context``: trust ``ca`` (default: the platform's
    trust store) and present ``cert``/``key`` (PKCS#8 or traditional PEM)."""
    if (cert is None) != (key is None):
        raise TLSConfigError("a client certificate needs both cert and key")
    if ca is None:
        trust = ssl.platformTrust()
    else:
        certs = _certificates(ca)
        trust = ssl.trustRootFromCertificates(certs)
    client = _private_certificate(cert, key) if cert is not None and key is not None else None
    return ClientTLS(trust, client, hostname)


def connection_creator(tls: Any, host: str) -> Any:
    """What ``connectSSL``/``wrapClientTLS`` needs, from any accepted ``tls``
    value: a :class:`ClientTLS`, an IPolicyForHTTPS, or a ready creator."""
    if isinstance(tls, ClientTLS):
        return tls.creator_for(host)
    if IPolicyForHTTPS.providedBy(tls):
        return tls.creatorForNetloc(host.encode("ascii"), 0)
    return tls


# -- throwaway certificates -------------------------------------------------

class PKIFiles(NamedTuple):
    """Paths written by :func:`generate_pki`."""

    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def generate_pki(directory: str, *, hostnames: Sequence[str] = ("localhost", "127.0.0.1"),
                 client_name: str = "client", days: int = 2,
                 expired: bool = False, prefix: str = "") -> PKIFiles:
    """Write a fresh CA plus a server and a client certificate it signs.

    Keys are PKCS#8 PEM (the seed's ``key.k8``). ``expired=True`` makes the
    leaf certificates already expired (for tests). For examples and tests
    only: the keys are unencrypted.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(filename: str, data: bytes) -> str:
        path = os.path.join(directory, prefix + filename)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def key_pem(k: Any) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name(prefix + "twisted_aleph throwaway CA")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    if expired:
        start, end = now - datetime.timedelta(days=10), now - datetime.timedelta(days=5)
    else:
        start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)

    def leaf(cn: str, usage: Any, sans: Sequence[str]) -> Any:
        k = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca_name)
            .public_key(k.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            alt: List[Any] = []
            for h in sans:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(h)))
                except ValueError:
                    alt.append(x509.DNSName(h))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return k, builder.sign(ca_key, hashes.SHA256())

    s_key, s_cert = leaf(hostnames[0], ExtendedKeyUsageOID.SERVER_AUTH, hostnames)
    c_key, c_cert = leaf(client_name, ExtendedKeyUsageOID.CLIENT_AUTH, ())
    pem = serialization.Encoding.PEM
    return PKIFiles(
        ca_cert=write("ca.crt", ca_cert.public_bytes(pem)),
        ca_key=write("ca.k8", key_pem(ca_key)),
        server_cert=write("server.crt", s_cert.public_bytes(pem)),
        server_key=write("server.k8", key_pem(s_key)),
        client_cert=write("client.crt", c_cert.public_bytes(pem)),
        client_key=write("client.k8", key_pem(c_key)),
    )


def __getattr__(name: str) -> Any:
    """The twistd TLS options, moved to :mod:`twisted_aleph.tap.options`: still
    found here for one release, with a DeprecationWarning."""
    if name in ("ServerTLSOptions", "server_tls_from_options"):
        from twisted_aleph.tap import options
        warnings.warn(f"twisted_aleph.tls.{name} moved to twisted_aleph.tap.options.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "TLSConfigError", "TLSError", "tls_error_in", "describe",
    "server_context", "client_context", "ClientTLS",
    "connection_creator", "generate_pki", "PKIFiles",
]
